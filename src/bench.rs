//! `graven bench`: a load tool in the manner of pgbench. It drives a running server (or,
//! with `--raw-redb`, a bare redb file with the same inserts and durability, the storage
//! engine's floor) with concurrent clients and reports throughput and latency.
//!
//! Workloads:
//! * `w1`: one client, sequential one-document insert transactions (commit latency).
//! * `w2`: many clients (default 64), one-document insert transactions (group commit).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use crate::pb;
use crate::server::MAX_MESSAGE_BYTES;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One client, sequential one-document inserts: commit latency.
    W1,
    /// Concurrent clients (default 64), one-document inserts: group-commit throughput.
    W2,
}

/// `graven bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "w2")]
    pub workload: Workload,
    /// Concurrent clients (default: 1 for w1, 64 for w2).
    #[arg(long)]
    pub clients: Option<usize>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of each document's JSON, in bytes (approximately).
    #[arg(long, default_value_t = 128)]
    pub doc_bytes: usize,
    /// HTTP/2 connections the clients share (default: one per 32 clients).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Instead of a server, write the same documents straight into a redb file at this
    /// path (one row per commit, `Durability::Immediate`): the storage floor.
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
    /// Committed transactions.
    pub transactions: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Commit latencies in microseconds, sorted.
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

    /// Transactions per second.
    pub fn throughput(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }

    /// The machine-readable form.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "workload": self.workload,
            "clients": self.clients,
            "transactions": self.transactions,
            "seconds": self.seconds,
            "throughput": self.throughput(),
            "revisions_per_sec": self.throughput(),
            "p50_ms": self.percentile_ms(50.0),
            "p90_ms": self.percentile_ms(90.0),
            "p99_ms": self.percentile_ms(99.0),
            "max_ms": self.percentile_ms(100.0),
            "errors": self.errors,
        })
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        format!(
            "{} {} clients={} transactions={} in {:.1}s\n  throughput  {:.0} tx/s\n  latency ms  \
             p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n  errors      {}\n",
            self.target,
            self.workload,
            self.clients,
            self.transactions,
            self.seconds,
            self.throughput(),
            self.percentile_ms(50.0),
            self.percentile_ms(90.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0),
            self.errors
        )
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

/// Prints a live progress line on a terminal until `done` is set.
fn progress(count: Arc<AtomicU64>, done: Arc<std::sync::atomic::AtomicBool>, quiet: bool) {
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    std::thread::spawn(move || {
        let start = Instant::now();
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            let n = count.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r{secs:5.1}s  {n} transactions  {:.0}/s   ",
                n as f64 / secs
            );
            let _ = std::io::stderr().flush();
        }
        eprint!("\r{:60}\r", "");
    });
}

/// Runs the benchmark described by `args` against `server` (or raw redb).
pub async fn run(server: &str, args: &BenchArgs) -> anyhow::Result<Report> {
    let clients = args.clients.unwrap_or(match args.workload {
        Workload::W1 => 1,
        Workload::W2 => 64,
    });
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    if let Some(path) = &args.raw_redb {
        let path = path.clone();
        let (duration, doc_bytes, workload, json) =
            (args.duration, args.doc_bytes, args.workload, args.json);
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
    let ledger = format!(
        "bench-{}",
        crate::service::generate_id()?.get(..12).unwrap_or("x")
    );
    admin
        .create_ledger(pb::CreateLedgerRequest {
            name: ledger.clone(),
            signing_key: String::new(),
            deletion_protection_off: true,
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating ledger: {}", s.message()))?;
    admin
        .create_table(pb::CreateTableRequest {
            ledger: ledger.clone(),
            table: "docs".into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating table: {}", s.message()))?;

    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    progress(count.clone(), done.clone(), args.json);
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut docs =
            pb::documents_client::DocumentsClient::new(channels[client % channels.len()].clone())
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let ledger = ledger.clone();
        let count = count.clone();
        let doc_bytes = args.doc_bytes;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let req = pb::TransactRequest {
                    ledger: ledger.clone(),
                    operations: vec![pb::Operation {
                        kind: Some(pb::operation::Kind::Insert(pb::Insert {
                            table: "docs".into(),
                            id: String::new(),
                            json: document(doc_bytes, client, n),
                        })),
                    }],
                    idempotency_key: String::new(),
                };
                let t = Instant::now();
                match docs.transact(req).await {
                    Ok(_) => {
                        latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    latencies.sort_unstable();
    Ok(Report {
        target: "graven",
        workload: format!("{:?}", args.workload).to_lowercase(),
        clients,
        transactions: latencies.len() as u64,
        errors,
        seconds,
        latencies,
    })
}

/// The same inserts straight into redb: one row per write transaction, fsynced.
fn raw_redb(
    path: &std::path::Path,
    workload: Workload,
    clients: usize,
    duration: f64,
    doc_bytes: usize,
    quiet: bool,
) -> anyhow::Result<Report> {
    const ROWS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("rows");
    let db = Arc::new(
        redb::Database::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    progress(count.clone(), done.clone(), quiet);
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (db, next, count) = (db.clone(), next.clone(), count.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let doc = document(doc_bytes, client, n);
                    let t = Instant::now();
                    let txn = db.begin_write()?;
                    {
                        let mut rows = txn.open_table(ROWS)?;
                        rows.insert(next.fetch_add(1, Ordering::Relaxed), doc.as_slice())?;
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
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    latencies.sort_unstable();
    Ok(Report {
        target: "redb",
        workload: format!("{workload:?}").to_lowercase(),
        clients,
        transactions: latencies.len() as u64,
        errors: 0,
        seconds,
        latencies,
    })
}
