//! The graven target: clients over gRPC against a running server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::bail;

use super::{
    BenchArgs, Client, DEFAULT_PRELOAD, HOT_SET, Ids, Outcome, PRELOAD_PREFIX, Plan, Progress,
    Remembered, Report, Rng, TABLE, W7_ROWS, Workload, document, drive,
};
use graven::client::{Bearer, Client as Connection, Conn};
use graven::pb;

/// Most operations per preload transaction (the server's default limit).
const PRELOAD_BATCH: usize = 10_000;
/// Bytes per preload transaction at most (under the server's 16 MiB default).
const PRELOAD_BATCH_BYTES: usize = 8 << 20;
/// Preload transactions in flight at once.
const PRELOAD_PARALLEL: usize = 4;

type Docs = pb::documents_client::DocumentsClient<Conn>;
type Admin = pb::admin_client::AdminClient<Conn>;

fn insert(id: String, json: Vec<u8>) -> pb::Operation {
    pb::Operation {
        kind: Some(pb::operation::Kind::Insert(pb::Insert {
            table: TABLE.into(),
            id,
            json,
        })),
    }
}

/// One client's state.
struct Worker {
    plan: Arc<Plan>,
    docs: Docs,
    ledger: String,
    client: usize,
    n: u64,
    rng: Rng,
    ids: Arc<Ids>,
    written: Remembered<String>,
}

impl Client for Worker {
    async fn step(&mut self) -> Outcome {
        let n = self.n;
        self.n += 1;
        let plan = self.plan.clone();
        match plan.workload {
            Workload::W1 | Workload::W2 | Workload::W3 => {
                if plan.read_now(&mut self.rng)
                    && let Some(id) = self.written.pick(&mut self.rng)
                {
                    return self.read(&id).await;
                }
                let ops = (0..plan.ops as u64)
                    .map(|i| {
                        let json = document(plan.doc_bytes, self.client, n * plan.ops as u64 + i);
                        insert(String::new(), json)
                    })
                    .collect();
                match self.transact(ops).await {
                    Ok(receipt) => {
                        if plan.reads > 0 {
                            for r in receipt.results {
                                self.written.add(r.id, &mut self.rng);
                            }
                        }
                        Outcome::Wrote(plan.ops as u64)
                    }
                    Err(s) => Outcome::Failed(graven::client::status_line(&s)),
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
                        json: document(plan.doc_bytes, self.client, n),
                        expected_version: Some(version),
                    })),
                };
                match self.transact(vec![op]).await {
                    Ok(_) => Outcome::Wrote(1),
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => Outcome::Aborted,
                    Err(s) => Outcome::Failed(graven::client::status_line(&s)),
                }
            }
            Workload::W5 => {
                let id = self.ids.pick(&mut self.rng);
                self.read(&id).await
            }
            Workload::W6 | Workload::W7 => {
                let n = self.rng.below(self.ids.len());
                let (text, params, rows) = if plan.workload == Workload::W6 {
                    (W6_STATEMENT, vec![n.to_string()], 1)
                } else {
                    let n = n.min(self.ids.len().saturating_sub(W7_ROWS));
                    (
                        W7_STATEMENT,
                        vec![n.to_string(), (n + W7_ROWS).to_string()],
                        W7_ROWS.min(self.ids.len()) as usize,
                    )
                };
                let req = pb::ExecuteStatementRequest {
                    ledger: self.ledger.clone(),
                    statements: vec![pb::StatementText {
                        text: text.into(),
                        parameters: params,
                    }],
                    page_size: W7_ROWS as u32,
                    ..Default::default()
                };
                match self.docs.execute_statement(req).await {
                    Ok(r) if r.get_ref().rows.len() == rows => Outcome::Read,
                    Ok(r) => Outcome::Failed(format!(
                        "{text} with n = {n}: {} rows, expected {rows}",
                        r.get_ref().rows.len()
                    )),
                    Err(s) => Outcome::Failed(graven::client::status_line(&s)),
                }
            }
        }
    }
}

/// w6's statement: an equality lookup through the index on `n`.
const W6_STATEMENT: &str = "SELECT * FROM docs AS d WHERE d.n = ?";
/// w7's statement: a range of [`W7_ROWS`] documents through the same index.
const W7_STATEMENT: &str = "SELECT * FROM docs AS d WHERE d.n >= ? AND d.n < ?";
/// The fields `--indexes` indexes, in order.
const INDEXED_FIELDS: [&str; 3] = ["client", "n", "pad"];

/// Runs one DDL statement; ALREADY_EXISTS is fine.
async fn ddl(docs: &mut Docs, ledger: &str, text: &str) -> anyhow::Result<()> {
    let req = pb::ExecuteStatementRequest {
        ledger: ledger.to_owned(),
        statements: vec![pb::StatementText {
            text: text.into(),
            parameters: vec![],
        }],
        ..Default::default()
    };
    match docs.execute_statement(req).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => bail!("{text}: {}", s.message()),
    }
}

/// The indexes of the table.
async fn indexes(admin: &mut Admin, ledger: &str) -> anyhow::Result<Vec<pb::IndexInfo>> {
    let tables = admin
        .list_tables(pb::ListTablesRequest {
            ledger: ledger.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("listing tables: {}", s.message()))?
        .into_inner()
        .tables;
    Ok(tables
        .into_iter()
        .filter(|t| t.name == TABLE)
        .flat_map(|t| t.indexes)
        .collect())
}

/// Waits until every index of the table is online; how long it took.
async fn wait_online(admin: &mut Admin, ledger: &str) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    loop {
        if indexes(admin, ledger)
            .await?
            .iter()
            .all(|i| i.state == "online")
        {
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

impl Worker {
    async fn transact(
        &mut self,
        operations: Vec<pb::Operation>,
    ) -> Result<pb::Receipt, tonic::Status> {
        let req = pb::TransactRequest {
            ledger: self.ledger.clone(),
            operations,
            idempotency_key: String::new(),
        };
        Ok(self.docs.transact(req).await?.into_inner())
    }

    /// Reads a document with its inclusion proof.
    async fn read(&mut self, id: &str) -> Outcome {
        match self.get(id, true).await {
            Ok(r) if r.proof.is_some() => Outcome::Read,
            Ok(_) => Outcome::Failed(format!("no inclusion proof for {TABLE}/{id}")),
            Err(e) => Outcome::Failed(e),
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
            Err(s) => Err(graven::client::status_line(&s)),
        }
    }
}

/// Runs the plan against the server at `server`.
pub(super) async fn run(server: &str, args: &BenchArgs, plan: &Plan) -> anyhow::Result<Report> {
    let workload = plan.workload;
    // Streams multiplexed on few connections cost less per request than many connections
    // (fewer, fuller writes): measured on 64 clients, 1 connection beat 8 by 18%.
    let connections = args
        .connections
        .unwrap_or(plan.clients.div_ceil(32))
        .clamp(1, plan.clients);
    let bearer = Bearer::from_env()?;
    // Each connection carries the token of `GRAVEN_TOKEN` or `GRAVEN_TOKEN_FILE`, if set.
    let mut channels: Vec<Connection> = Vec::new();
    for _ in 0..connections {
        let channel = graven::client::connect_channel(server).await?;
        channels.push(Connection::from_channel(channel, bearer.clone()));
    }
    let mut admin = channels[0].admin.clone();
    let run_id = graven::engine::prepare::generate_ids(1)?.concat();
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

    let mut docs = channels[0].docs.clone();
    let mut preloaded = None;
    let ids = match workload {
        Workload::W4 => {
            // Fresh hot documents for this run (an existing ledger may hold others).
            let prefix = format!("hot-{}-", run_id.get(20..).unwrap_or("x"));
            let operations = (0..HOT_SET)
                .map(|i| {
                    insert(
                        format!("{prefix}{i}"),
                        document(plan.doc_bytes, 0, i as u64),
                    )
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
        Workload::W5 | Workload::W6 | Workload::W7 => {
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
                    preload(&channels, &ledger, wanted, plan.doc_bytes, plan.quiet).await?;
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
    // The indexes the run needs, built (and timed) before it.
    let mut index_build = None;
    if matches!(workload, Workload::W6 | Workload::W7) {
        let had = indexes(&mut admin, &ledger)
            .await?
            .iter()
            .any(|i| i.path == "n");
        ddl(&mut docs, &ledger, "CREATE INDEX ON docs (n)").await?;
        let secs = wait_online(&mut admin, &ledger).await?;
        if !had {
            index_build = Some((ids.len(), secs));
        }
    }
    for field in INDEXED_FIELDS.iter().take(args.indexes) {
        ddl(
            &mut docs,
            &ledger,
            &format!("CREATE INDEX ON docs ({field})"),
        )
        .await?;
    }
    wait_online(&mut admin, &ledger).await?;
    let ids = Arc::new(ids);
    let shared = Arc::new(plan.clone());
    let workers = (0..plan.clients)
        .map(|client| Worker {
            plan: shared.clone(),
            docs: channels[client % channels.len()].docs.clone(),
            ledger: ledger.clone(),
            client,
            n: 0,
            rng: Rng::new(client),
            ids: ids.clone(),
            written: Remembered::new(),
        })
        .collect();
    let totals = drive(plan, workers).await?;
    Ok(Report {
        target: if args.indexes > 0 {
            "graven-indexes"
        } else {
            "graven"
        },
        workload: workload.name().into(),
        clients: plan.clients,
        ledger: Some(ledger),
        totals,
        conflicts: workload == Workload::W4,
        preloaded,
        index_build,
        indexes: args.indexes,
    })
}

/// Whether `id` exists in table `docs` of `ledger`.
async fn exists(docs: &mut Docs, ledger: &str, id: &str) -> anyhow::Result<bool> {
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
async fn existing_ids(docs: &mut Docs, ledger: &str) -> anyhow::Result<Option<Ids>> {
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
    channels: &[Connection],
    ledger: &str,
    total: u64,
    doc_bytes: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let batch = (PRELOAD_BATCH_BYTES / (doc_bytes + 64)).clamp(1, PRELOAD_BATCH) as u64;
    let batches = total.div_ceil(batch);
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(quiet, "preload", Some(total), count.clone());
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..PRELOAD_PARALLEL.min(batches as usize) {
        let mut docs = channels[worker % channels.len()].docs.clone();
        let (next, count, failed) = (next.clone(), count.clone(), failed.clone());
        let ledger = ledger.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches || failed.load(Ordering::Relaxed) {
                    return Ok::<(), anyhow::Error>(());
                }
                let range = b * batch..((b + 1) * batch).min(total);
                let len = range.end - range.start;
                let operations = range
                    .map(|n| {
                        insert(
                            format!("{PRELOAD_PREFIX}{n}"),
                            document(doc_bytes, worker, n),
                        )
                    })
                    .collect();
                let sent = docs
                    .transact(pb::TransactRequest {
                        ledger: ledger.clone(),
                        operations,
                        idempotency_key: String::new(),
                    })
                    .await;
                if let Err(s) = sent {
                    failed.store(true, Ordering::Relaxed);
                    bail!("preload: {}", graven::client::status_line(&s));
                }
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
    bar.stop();
    result
}
