//! `graven bench`: a load tool in the manner of pgbench. It drives a running server (or,
//! with `--raw-redb`, a bare redb file with the same inserts and durability, the storage
//! engine's floor) with concurrent clients and reports throughput and latency.
//!
//! Workloads:
//! * `w1`: one client, sequential one-document insert transactions (commit latency).
//! * `w2`: many clients (default 64), one-document insert transactions (group commit).
//! * `w3`: bulk ingest: 8 clients, 100 documents of 1 KiB per transaction; revisions/s.
//! * `w4`: read-then-update with an expected version on a hot set of 100 documents, 32
//!   clients: committed and aborted (FAILED_PRECONDITION) counts; throughput = commits/s.
//!   Its latencies are of whole committed read-then-update cycles.
//! * `w5`: reads: 32 clients, GetDocument with an inclusion proof of random documents of a
//!   pre-loaded ledger (`--preload`, default 1,000,000); throughput = reads/s.
//!
//! Errors are counted and the run goes on; the first one is printed on stderr.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use crate::pb;
use crate::server::MAX_MESSAGE_BYTES;

/// The table every workload uses.
const TABLE: &str = "docs";
/// Documents per W3 transaction.
const W3_BATCH: usize = 100;
/// Documents in the W4 hot set.
const HOT_SET: usize = 100;
/// Most operations per preload transaction (the server's default limit).
const PRELOAD_BATCH: usize = 10_000;
/// Bytes per preload transaction at most (under the server's 16 MiB default).
const PRELOAD_BATCH_BYTES: usize = 8 << 20;
/// Preload transactions in flight at once.
const PRELOAD_PARALLEL: usize = 4;
/// Ids of preloaded documents: this prefix and 0, 1, 2, ...
const PRELOAD_PREFIX: &str = "w5-";
/// Default `--preload` for w5.
const DEFAULT_PRELOAD: u64 = 1_000_000;

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
    /// GetDocument with an inclusion proof of random preloaded documents (default 32
    /// clients).
    W5,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
        }
    }

    fn default_clients(self) -> usize {
        match self {
            Workload::W1 => 1,
            Workload::W2 => 64,
            Workload::W3 => 8,
            Workload::W4 | Workload::W5 => 32,
        }
    }

    fn default_doc_bytes(self) -> usize {
        match self {
            Workload::W3 => 1024,
            _ => 128,
        }
    }

    /// Revisions each counted unit writes (0 for reads).
    fn revisions_per_unit(self) -> u64 {
        match self {
            Workload::W3 => W3_BATCH as u64,
            Workload::W5 => 0,
            _ => 1,
        }
    }
}

/// `graven bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "w2")]
    pub workload: Workload,
    /// Concurrent clients (default: 1 for w1, 64 for w2, 8 for w3, 32 for w4 and w5).
    #[arg(long)]
    pub clients: Option<usize>,
    /// How long to run, in seconds (after any preload).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
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
    /// w5 only: documents to insert before timing (default 1,000,000). With `--ledger`,
    /// skipped if table `docs` already has documents.
    #[arg(long)]
    pub preload: Option<u64>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Instead of a server, write the same documents straight into a redb file at this
    /// path (w1, w2: one row per commit; w3: 100 rows per commit; `Durability::Immediate`):
    /// the storage floor.
    #[arg(long)]
    pub raw_redb: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target: `graven` or `redb`.
    pub target: &'static str,
    /// Workload name.
    pub workload: String,
    /// Clients.
    pub clients: usize,
    /// The ledger used (graven only).
    pub ledger: Option<String>,
    /// Counted units: committed transactions (w1 to w4) or reads (w5).
    pub count: u64,
    /// Revisions each counted unit wrote (100 for w3, 0 for reads).
    pub revisions_per_unit: u64,
    /// Whether the units are reads.
    pub reads: bool,
    /// w4: updates refused because the expected version was stale.
    pub aborted: Option<u64>,
    /// w5: documents inserted before timing (0 if an existing ledger was reused).
    pub preloaded: Option<u64>,
    /// Failed requests.
    pub errors: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Latencies in microseconds of the counted units, sorted.
    pub latencies: Vec<u32>,
}

impl Report {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        f64::from(self.latencies[rank]) / 1000.0
    }

    /// Committed transactions (or reads, for w5) per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Revisions written per second.
    pub fn revisions_per_sec(&self) -> f64 {
        self.throughput() * self.revisions_per_unit as f64
    }

    /// The machine-readable form.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "target": self.target,
            "workload": self.workload,
            "clients": self.clients,
            "transactions": if self.reads { 0 } else { self.count },
            "seconds": self.seconds,
            "throughput": self.throughput(),
            "revisions_per_sec": self.revisions_per_sec(),
            "p50_ms": self.percentile_ms(50.0),
            "p90_ms": self.percentile_ms(90.0),
            "p99_ms": self.percentile_ms(99.0),
            "max_ms": self.percentile_ms(100.0),
            "errors": self.errors,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(ledger) = &self.ledger {
                obj.insert("ledger".into(), json!(ledger));
            }
            if self.reads {
                obj.insert("reads".into(), json!(self.count));
            }
            if let Some(aborted) = self.aborted {
                obj.insert("committed".into(), json!(self.count));
                obj.insert("aborted".into(), json!(aborted));
            }
            if let Some(preloaded) = self.preloaded {
                obj.insert("preloaded".into(), json!(preloaded));
            }
        }
        v
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let unit = if self.reads { "reads" } else { "transactions" };
        let mut s = format!(
            "{} {} clients={} {unit}={} in {:.1}s\n  throughput  {:.0} {}/s\n",
            self.target,
            self.workload,
            self.clients,
            self.count,
            self.seconds,
            self.throughput(),
            if self.reads { "reads" } else { "tx" },
        );
        if self.revisions_per_unit > 1 {
            s += &format!("  revisions   {:.0}/s\n", self.revisions_per_sec());
        }
        if let Some(aborted) = self.aborted {
            let attempts = self.count + aborted;
            s += &format!(
                "  committed   {}  aborted {} ({:.1}% of attempts)\n",
                self.count,
                aborted,
                if attempts == 0 {
                    0.0
                } else {
                    100.0 * aborted as f64 / attempts as f64
                }
            );
        }
        if let Some(preloaded) = self.preloaded {
            if preloaded == 0 {
                s += "  preloaded   none (the ledger's documents were reused)\n";
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
            self.errors
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

/// Prints the first error of a run on stderr (later ones are only counted).
fn first_error(shown: &AtomicBool, message: &str) {
    if !shown.swap(true, Ordering::Relaxed) {
        let clear = if std::io::stderr().is_terminal() {
            format!("\r{:70}\r", "")
        } else {
            String::new()
        };
        eprintln!("{clear}graven bench: error (counted; later errors are not shown): {message}");
    }
}

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Prints a live progress line on a terminal until `done` is set; join the handle after
/// setting `done` so the line is cleared before anything else is printed.
fn progress(
    count: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    quiet: bool,
    label: &'static str,
    total: Option<u64>,
) -> Option<std::thread::JoinHandle<()>> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(std::thread::spawn(move || {
        let start = Instant::now();
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let n = count.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            match total {
                Some(total) => eprint!(
                    "\r{label} {n}/{total} documents  {secs:5.1}s  {:.0}/s   ",
                    n as f64 / secs
                ),
                None => eprint!("\r{secs:5.1}s  {n} {label}  {:.0}/s   ", n as f64 / secs),
            }
            let _ = std::io::stderr().flush();
        }
        eprint!("\r{:70}\r", "");
    }))
}

fn stop_progress(done: &AtomicBool, handle: Option<std::thread::JoinHandle<()>>) {
    done.store(true, Ordering::Relaxed);
    if let Some(h) = handle {
        let _ = h.join();
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
    /// Counted (committed, or read).
    Done,
    /// w4: the expected version was stale.
    Aborted,
    /// Any other failure.
    Failed(String),
}

/// One client's state.
struct Worker {
    workload: Workload,
    docs: pb::documents_client::DocumentsClient<Channel>,
    ledger: String,
    client: usize,
    n: u64,
    doc_bytes: usize,
    rng: Rng,
    ids: Arc<Ids>,
}

impl Worker {
    fn insert(&self, id: String, n: u64) -> pb::Operation {
        pb::Operation {
            kind: Some(pb::operation::Kind::Insert(pb::Insert {
                table: TABLE.into(),
                id,
                json: document(self.doc_bytes, self.client, n),
            })),
        }
    }

    async fn transact(&mut self, operations: Vec<pb::Operation>) -> Result<(), tonic::Status> {
        let req = pb::TransactRequest {
            ledger: self.ledger.clone(),
            operations,
            idempotency_key: String::new(),
        };
        self.docs.transact(req).await.map(|_| ())
    }

    async fn step(&mut self) -> Outcome {
        let n = self.n;
        self.n += 1;
        match self.workload {
            Workload::W1 | Workload::W2 => {
                let op = self.insert(String::new(), n);
                match self.transact(vec![op]).await {
                    Ok(()) => Outcome::Done,
                    Err(s) => Outcome::Failed(status_text(&s)),
                }
            }
            Workload::W3 => {
                let ops = (0..W3_BATCH as u64)
                    .map(|i| self.insert(String::new(), n * W3_BATCH as u64 + i))
                    .collect();
                match self.transact(ops).await {
                    Ok(()) => Outcome::Done,
                    Err(s) => Outcome::Failed(status_text(&s)),
                }
            }
            Workload::W4 => {
                let id = self.ids.pick(&mut self.rng);
                let version = match self.get(&id, false).await {
                    Ok(r) => r.version,
                    Err(e) => return Outcome::Failed(e),
                };
                let op = pb::Operation {
                    kind: Some(pb::operation::Kind::Update(pb::Update {
                        table: TABLE.into(),
                        id,
                        json: document(self.doc_bytes, self.client, n),
                        expected_version: Some(version),
                    })),
                };
                match self.transact(vec![op]).await {
                    Ok(()) => Outcome::Done,
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => Outcome::Aborted,
                    Err(s) => Outcome::Failed(status_text(&s)),
                }
            }
            Workload::W5 => {
                let id = self.ids.pick(&mut self.rng);
                match self.get(&id, true).await {
                    Ok(r) if r.proof.is_some() => Outcome::Done,
                    Ok(_) => Outcome::Failed(format!("no inclusion proof for {TABLE}/{id}")),
                    Err(e) => Outcome::Failed(e),
                }
            }
        }
    }

    /// The latest revision of `id`, with an inclusion proof at the current size if asked.
    async fn get(&mut self, id: &str, proof: bool) -> Result<pb::Revision, String> {
        let req = pb::GetDocumentRequest {
            ledger: self.ledger.clone(),
            table: TABLE.into(),
            id: id.to_owned(),
            version: None,
            proof: proof.then_some(pb::ProofRequest { tree_size: 0 }),
        };
        match self.docs.get_document(req).await {
            Ok(r) => r
                .into_inner()
                .revision
                .ok_or_else(|| format!("no revision in the response for {TABLE}/{id}")),
            Err(s) => Err(status_text(&s)),
        }
    }
}

fn docs_client(channel: Channel) -> pb::documents_client::DocumentsClient<Channel> {
    pb::documents_client::DocumentsClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// Runs the benchmark described by `args` against `server` (or raw redb).
pub async fn run(server: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    let workload = args.workload;
    let clients = args.clients.unwrap_or(workload.default_clients());
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    let doc_bytes = args.doc_bytes.unwrap_or(workload.default_doc_bytes());
    if args.preload.is_some() && workload != Workload::W5 {
        bail!("--preload is for w5 only");
    }
    if let Some(path) = &args.raw_redb {
        if matches!(workload, Workload::W4 | Workload::W5) {
            bail!(
                "--raw-redb supports w1, w2 and w3 only: {} measures graven's own reads and \
                 versioned updates, which have no raw redb equivalent; run it against a server",
                workload.name()
            );
        }
        if args.ledger.is_some() {
            bail!("--ledger needs a server; it cannot be combined with --raw-redb");
        }
        let path = path.clone();
        let (duration, json) = (args.duration, args.json);
        return tokio::task::spawn_blocking(move || {
            raw_redb(&path, workload, clients, duration, doc_bytes, json)
        })
        .await?;
    }
    // Streams multiplexed on few connections cost less per request than many connections
    // (fewer, fuller writes): measured on 64 clients, 1 connection beat 8 by 18%.
    let connections = args
        .connections
        .unwrap_or(clients.div_ceil(32))
        .clamp(1, clients);
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..connections {
        channels.push(
            Endpoint::from_shared(server.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("cannot connect to {server}"))?,
        );
    }
    let mut admin = pb::admin_client::AdminClient::new(channels[0].clone());
    let run_id = crate::service::generate_id()?;
    let ledger = match &args.ledger {
        Some(name) => {
            admin
                .describe_ledger(pb::DescribeLedgerRequest { name: name.clone() })
                .await
                .map_err(|s| anyhow::anyhow!("ledger {name}: {}", s.message()))?;
            name.clone()
        }
        None => {
            // Milliseconds and some random digits: concurrent runs do not collide.
            let name = format!(
                "bench-{}{}",
                run_id.get(..12).unwrap_or("x"),
                run_id.get(28..).unwrap_or("")
            );
            admin
                .create_ledger(pb::CreateLedgerRequest {
                    name: name.clone(),
                    signing_key: String::new(),
                    deletion_protection_off: true,
                })
                .await
                .map_err(|s| anyhow::anyhow!("creating ledger: {}", s.message()))?;
            name
        }
    };
    match admin
        .create_table(pb::CreateTableRequest {
            ledger: ledger.clone(),
            table: TABLE.into(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if args.ledger.is_some() && s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => bail!("creating table {TABLE}: {}", s.message()),
    }

    let mut docs = docs_client(channels[0].clone());
    let mut preloaded = None;
    let ids = match workload {
        Workload::W4 => {
            // Fresh hot documents for this run (an existing ledger may hold others).
            let prefix = format!("hot-{}-", run_id.get(20..).unwrap_or("x"));
            let operations = (0..HOT_SET)
                .map(|i| pb::Operation {
                    kind: Some(pb::operation::Kind::Insert(pb::Insert {
                        table: TABLE.into(),
                        id: format!("{prefix}{i}"),
                        json: document(doc_bytes, 0, i as u64),
                    })),
                })
                .collect();
            docs.transact(pb::TransactRequest {
                ledger: ledger.clone(),
                operations,
                idempotency_key: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("inserting the hot set: {}", s.message()))?;
            Ids::Numbered {
                prefix,
                count: HOT_SET as u64,
            }
        }
        Workload::W5 => {
            let wanted = args.preload.unwrap_or(DEFAULT_PRELOAD);
            let existing = if args.ledger.is_some() {
                existing_ids(&mut docs, &ledger).await?
            } else {
                None
            };
            let ids = match existing {
                Some(ids) => {
                    preloaded = Some(0);
                    ids
                }
                None => {
                    if wanted == 0 {
                        bail!("w5 needs documents to read: --preload must be at least 1");
                    }
                    preload(&channels, &ledger, wanted, doc_bytes, args.json).await?;
                    preloaded = Some(wanted);
                    Ids::Numbered {
                        prefix: PRELOAD_PREFIX.into(),
                        count: wanted,
                    }
                }
            };
            if ids.len() == 0 {
                bail!("table {TABLE} of ledger {ledger} has no documents to read");
            }
            ids
        }
        _ => Ids::Listed(Vec::new()),
    };
    let ids = Arc::new(ids);

    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let shown = Arc::new(AtomicBool::new(false));
    let label = if workload == Workload::W5 {
        "reads"
    } else {
        "transactions"
    };
    let bar = progress(count.clone(), done.clone(), args.json, label, None);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut worker = Worker {
            workload,
            docs: docs_client(channels[client % channels.len()].clone()),
            ledger: ledger.clone(),
            client,
            n: 0,
            doc_bytes,
            rng: Rng::new(client),
            ids: ids.clone(),
        };
        let count = count.clone();
        let shown = shown.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut aborted) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match worker.step().await {
                    Outcome::Done => {
                        latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Aborted => aborted += 1,
                    Outcome::Failed(message) => {
                        errors += 1;
                        first_error(&shown, &message);
                    }
                }
            }
            (latencies, errors, aborted)
        }));
    }
    let mut latencies = Vec::new();
    let (mut errors, mut aborted) = (0, 0);
    for t in tasks {
        let (l, e, a) = t.await?;
        latencies.extend(l);
        errors += e;
        aborted += a;
    }
    let seconds = start.elapsed().as_secs_f64();
    stop_progress(&done, bar);
    latencies.sort_unstable();
    Ok(Report {
        target: "graven",
        workload: workload.name().into(),
        clients,
        ledger: Some(ledger),
        count: latencies.len() as u64,
        revisions_per_unit: workload.revisions_per_unit(),
        reads: workload == Workload::W5,
        aborted: (workload == Workload::W4).then_some(aborted),
        preloaded,
        errors,
        seconds,
        latencies,
    })
}

/// Whether `id` exists in table `docs` of `ledger`.
async fn exists(
    docs: &mut pb::documents_client::DocumentsClient<Channel>,
    ledger: &str,
    id: &str,
) -> anyhow::Result<bool> {
    let req = pb::GetDocumentRequest {
        ledger: ledger.to_owned(),
        table: TABLE.into(),
        id: id.to_owned(),
        version: None,
        proof: None,
    };
    match docs.get_document(req).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => bail!("reading {TABLE}/{id}: {}", s.message()),
    }
}

/// The documents of an existing ledger's table `docs`, or `None` if it has none. A
/// previous w5 preload (ids `w5-0`, `w5-1`, ...) is counted by binary search; other
/// documents are listed with Scan.
async fn existing_ids(
    docs: &mut pb::documents_client::DocumentsClient<Channel>,
    ledger: &str,
) -> anyhow::Result<Option<Ids>> {
    let scan = |page_size: u32, page_token: String| pb::ScanRequest {
        ledger: ledger.to_owned(),
        table: TABLE.into(),
        page_size,
        page_token,
        proof: None,
    };
    let first = docs
        .scan(scan(1, String::new()))
        .await
        .map_err(|s| anyhow::anyhow!("scanning {TABLE}: {}", s.message()))?
        .into_inner();
    if first.revisions.is_empty() {
        return Ok(None);
    }
    if exists(docs, ledger, &format!("{PRELOAD_PREFIX}0")).await? {
        // The largest n with w5-n present: a preload fills 0..N.
        let mut hi = 1u64;
        while exists(docs, ledger, &format!("{PRELOAD_PREFIX}{hi}")).await? {
            hi *= 2;
        }
        let mut lo = hi / 2; // present; hi is absent
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(docs, ledger, &format!("{PRELOAD_PREFIX}{mid}")).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return Ok(Some(Ids::Numbered {
            prefix: PRELOAD_PREFIX.into(),
            count: lo + 1,
        }));
    }
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = docs
            .scan(scan(1000, token))
            .await
            .map_err(|s| anyhow::anyhow!("scanning {TABLE}: {}", s.message()))?
            .into_inner();
        ids.extend(page.revisions.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(Some(Ids::Listed(ids)))
}

/// Inserts documents `w5-0` to `w5-{total-1}` in big transactions, a few in flight.
async fn preload(
    channels: &[Channel],
    ledger: &str,
    total: u64,
    doc_bytes: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let batch = (PRELOAD_BATCH_BYTES / (doc_bytes + 64)).clamp(1, PRELOAD_BATCH) as u64;
    let batches = total.div_ceil(batch);
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = progress(count.clone(), done.clone(), quiet, "preload", Some(total));
    let mut tasks = Vec::new();
    for worker in 0..PRELOAD_PARALLEL.min(batches as usize) {
        let mut docs = docs_client(channels[worker % channels.len()].clone());
        let (next, count, ledger) = (next.clone(), count.clone(), ledger.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                let range = b * batch..((b + 1) * batch).min(total);
                let len = range.end - range.start;
                let operations = range
                    .map(|n| pb::Operation {
                        kind: Some(pb::operation::Kind::Insert(pb::Insert {
                            table: TABLE.into(),
                            id: format!("{PRELOAD_PREFIX}{n}"),
                            json: document(doc_bytes, worker, n),
                        })),
                    })
                    .collect();
                docs.transact(pb::TransactRequest {
                    ledger: ledger.clone(),
                    operations,
                    idempotency_key: String::new(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("preload: {}", status_text(&s)))?;
                count.fetch_add(len, Ordering::Relaxed);
            }
        }));
    }
    let mut result = Ok(());
    for t in tasks {
        let r = t.await.map_err(anyhow::Error::from).and_then(|r| r);
        if result.is_ok() {
            result = r;
        }
    }
    stop_progress(&done, bar);
    result
}

/// The same inserts straight into redb: w1 and w2 one row per write transaction, w3 100
/// rows per write transaction, each fsynced.
fn raw_redb(
    path: &std::path::Path,
    workload: Workload,
    clients: usize,
    duration: f64,
    doc_bytes: usize,
    quiet: bool,
) -> anyhow::Result<Report> {
    const ROWS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("rows");
    let rows_per_commit = workload.revisions_per_unit().max(1);
    let db = Arc::new(
        redb::Database::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = progress(count.clone(), done.clone(), quiet, "transactions", None);
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (db, next, count) = (db.clone(), next.clone(), count.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let docs: Vec<Vec<u8>> = (0..rows_per_commit)
                        .map(|i| document(doc_bytes, client, n * rows_per_commit + i))
                        .collect();
                    let t = Instant::now();
                    let txn = db.begin_write()?;
                    {
                        let mut rows = txn.open_table(ROWS)?;
                        for doc in &docs {
                            rows.insert(next.fetch_add(1, Ordering::Relaxed), doc.as_slice())?;
                        }
                    }
                    txn.commit()?;
                    latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    count.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a client thread panicked"))),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    stop_progress(&done, bar);
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort_unstable();
    Ok(Report {
        target: "redb",
        workload: workload.name().into(),
        clients,
        ledger: None,
        count: latencies.len() as u64,
        revisions_per_unit: rows_per_commit,
        reads: false,
        aborted: None,
        preloaded: None,
        errors: 0,
        seconds,
        latencies,
    })
}
