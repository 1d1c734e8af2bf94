//! The raw redb floor: the same inserts straight into a redb table, one write
//! transaction of `--ops` rows per step, each `Durability::Immediate` (fsynced), with no
//! ledger work and no network. Each client is a thread committing its own transactions:
//! redb serializes writers and has no group commit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use redb::ReadableDatabase as _;

use super::{Limit, Outcome, Plan, Progress, Remembered, Report, Rng, Totals, document};

const ROWS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("rows");

/// One step: a write transaction of `plan.ops` rows, or (for `--reads`) a read of a row
/// this client wrote.
fn step(
    db: &redb::Database,
    plan: &Plan,
    client: usize,
    n: u64,
    next_key: &AtomicU64,
    rng: &mut Rng,
    written: &mut Remembered<u64>,
) -> anyhow::Result<Outcome> {
    if plan.read_now(rng)
        && let Some(key) = written.pick(rng)
    {
        let txn = db.begin_read()?;
        let rows = txn.open_table(ROWS)?;
        let found = rows.get(key)?.map(|v| v.value().len());
        return Ok(match found {
            Some(_) => Outcome::Read,
            None => Outcome::Failed(format!("row {key} is missing")),
        });
    }
    let ops = plan.ops as u64;
    let docs: Vec<Vec<u8>> = (0..ops)
        .map(|i| document(plan.doc_bytes, client, n * ops + i))
        .collect();
    let txn = db.begin_write()?;
    {
        let mut rows = txn.open_table(ROWS)?;
        for doc in &docs {
            let key = next_key.fetch_add(1, Ordering::Relaxed);
            rows.insert(key, doc.as_slice())?;
            if plan.reads > 0 {
                written.add(key, rng);
            }
        }
    }
    txn.commit()?;
    Ok(Outcome::Wrote(ops))
}

/// Runs the plan against a new redb file at `path`.
pub(super) fn run(path: &Path, plan: &Plan) -> anyhow::Result<Report> {
    let db = Arc::new(
        redb::Database::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let next_key = Arc::new(AtomicU64::new(0));
    let limit = Limit::new(plan);
    let shown = Arc::new(AtomicBool::new(false));
    let bar = Progress::start(plan.quiet, "steps", None, limit.done.clone());
    let start = Instant::now();
    let threads: Vec<_> = (0..plan.clients)
        .map(|client| {
            let (db, next_key, limit, shown) =
                (db.clone(), next_key.clone(), limit.clone(), shown.clone());
            let plan = plan.clone();
            std::thread::spawn(move || -> anyhow::Result<Totals> {
                let mut totals = Totals::default();
                let mut rng = Rng::new(client);
                let mut written = Remembered::new();
                let mut n = 0;
                while limit.next() {
                    let t = Instant::now();
                    let outcome = step(&db, &plan, client, n, &next_key, &mut rng, &mut written)?;
                    totals.record(outcome, t, &shown);
                    limit.done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                Ok(totals)
            })
        })
        .collect();
    let mut totals = Totals::default();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(part)) => totals.add(part),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a client thread panicked"))),
        }
    }
    totals.seconds = start.elapsed().as_secs_f64();
    bar.stop();
    if let Some(e) = failure {
        return Err(e);
    }
    totals.latencies.sort_unstable();
    Ok(Report {
        target: "redb",
        workload: plan.workload.name().into(),
        clients: plan.clients,
        ledger: None,
        totals,
        conflicts: false,
        preloaded: None,
        index_build: None,
        indexes: 0,
    })
}
