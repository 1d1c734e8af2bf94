//! The PostgreSQL peer: what AWS told QLDB users to build instead of a ledger, so that a
//! comparison with graven is like for like.
//!
//! The schema (recreated for every run, in its own schema of the given database):
//! * `docs (id text primary key, version bigint, body jsonb)`: the current state;
//! * `docs_audit (seq bigserial, id, version, op, body, changed_at, changed_by, hash)`:
//!   one row per change, written by an `AFTER INSERT OR UPDATE OR DELETE` trigger on
//!   `docs`, indexed by `(id, version)`;
//! * `chain_head (hash bytea)`: one row; the trigger sets it to
//!   `SHA-256(previous hash || the change)` (pgcrypto's `digest`) and stores the result in
//!   the audit row, so the audit rows form a hash chain. The chain serializes writers on
//!   that one row until they commit: that is the price of a chain in PostgreSQL, and what
//!   graven's Merkle tree and group commit avoid. `--no-chain` drops the chain (audit
//!   rows without hashes) to show what it costs.
//!
//! Every client has its own connection (PostgreSQL serves a connection per process). The
//! server should run with `synchronous_commit = on` (the default): a commit is then
//! acknowledged after its WAL is flushed, like graven's. Reads (w5, `--reads`) fetch the
//! document with its audit row's hash; PostgreSQL has no short proof to offer: checking
//! one row against the chain means rehashing the chain up to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use tokio_postgres::{Client as PgClient, NoTls, Statement};

use super::{
    BenchArgs, Client, DEFAULT_PRELOAD, HOT_SET, Outcome, PRELOAD_PREFIX, Plan, Progress,
    Remembered, Report, Rng, W7_ROWS, Workload, document, drive,
};

/// Rows per preload statement. Small, because the chain makes a big one quadratic: each
/// row's trigger updates the one head row again, and within one transaction PostgreSQL
/// must walk every earlier version of that row to reach the newest (5,000 rows per
/// statement took 10 minutes for 1M rows; 500, about one).
const PRELOAD_BATCH: u64 = 500;
/// Preload statements in flight at once.
const PRELOAD_PARALLEL: u64 = 4;

/// The schema, with `{s}` for its name. `{chain}` is the trigger's chain step.
const SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS pgcrypto;
DROP SCHEMA IF EXISTS {s} CASCADE;
CREATE SCHEMA {s};
CREATE TABLE {s}.docs (
    id text PRIMARY KEY,
    version bigint NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE {s}.docs_audit (
    seq bigserial PRIMARY KEY,
    id text NOT NULL,
    version bigint NOT NULL,
    op text NOT NULL,
    body jsonb,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    hash bytea
);
CREATE INDEX ON {s}.docs_audit (id, version);
CREATE TABLE {s}.chain_head (
    only_row boolean PRIMARY KEY CHECK (only_row),
    hash bytea NOT NULL
);
INSERT INTO {s}.chain_head VALUES (true, digest('', 'sha256'));
CREATE FUNCTION {s}.audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r {s}.docs;
    at timestamptz := clock_timestamp();
    h bytea;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    {chain}
    INSERT INTO {s}.docs_audit (id, version, op, body, changed_at, changed_by, hash)
    VALUES (r.id, r.version, TG_OP, CASE WHEN TG_OP <> 'DELETE' THEN r.body END, at,
            current_user, h);
    RETURN NULL;
END
$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON {s}.docs
    FOR EACH ROW EXECUTE FUNCTION {s}.audit();
"#;

/// The chain step: extend the hash chain by this change, under the head row's lock.
const CHAIN: &str = r#"UPDATE {s}.chain_head
    SET hash = digest(hash || convert_to(concat_ws(E'\n', TG_OP, r.id, r.version,
                      at, current_user, r.body::text), 'UTF8'), 'sha256')
    RETURNING hash INTO h;"#;

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

async fn connect(url: &str) -> anyhow::Result<PgClient> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error shows up on the client's next query.
        let _ = connection.await;
    });
    Ok(client)
}

/// The statements a client uses, prepared on its connection.
struct Statements {
    insert_one: Statement,
    insert_many: Statement,
    read: Statement,
    version: Statement,
    update: Statement,
    by_n: Statement,
    n_range: Statement,
}

impl Statements {
    async fn prepare(c: &PgClient, s: &str) -> anyhow::Result<Statements> {
        let p = |sql: String| async move { c.prepare(&sql).await.map_err(|e| pg_error(&e)) };
        let prepared = async {
            Ok::<_, String>(Statements {
                insert_one: p(format!(
                    "INSERT INTO {s}.docs (id, version, body) VALUES ($1, 0, $2::text::jsonb)"
                ))
                .await?,
                insert_many: p(format!(
                    "INSERT INTO {s}.docs (id, version, body) \
                     SELECT i, 0, b::jsonb FROM unnest($1::text[], $2::text[]) AS t(i, b)"
                ))
                .await?,
                read: p(format!(
                    "SELECT d.body::text, d.version, a.hash FROM {s}.docs d \
                     JOIN {s}.docs_audit a ON a.id = d.id AND a.version = d.version \
                     WHERE d.id = $1"
                ))
                .await?,
                version: p(format!("SELECT version FROM {s}.docs WHERE id = $1")).await?,
                update: p(format!(
                    "UPDATE {s}.docs SET body = $2::text::jsonb, version = version + 1 \
                     WHERE id = $1 AND version = $3"
                ))
                .await?,
                by_n: p(format!(
                    "SELECT body::text FROM {s}.docs WHERE (body->>'n')::bigint = $1"
                ))
                .await?,
                n_range: p(format!(
                    "SELECT body::text FROM {s}.docs \
                     WHERE (body->>'n')::bigint >= $1 AND (body->>'n')::bigint < $2"
                ))
                .await?,
            })
        };
        prepared
            .await
            .map_err(|e| anyhow::anyhow!("preparing statements: {e}"))
    }
}

fn json_text(doc: Vec<u8>) -> String {
    // `document` writes ASCII JSON.
    String::from_utf8_lossy(&doc).into_owned()
}

/// One client: its own connection.
struct Worker {
    plan: Arc<Plan>,
    pg: PgClient,
    st: Statements,
    client: usize,
    n: u64,
    rng: Rng,
    /// w5: documents `w5-0` to `w5-{count-1}`; w4: `hot-0` to `hot-99`.
    ids: u64,
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
                let ops = plan.ops as u64;
                let ids: Vec<String> = (0..ops)
                    .map(|i| format!("c{}-{}", self.client, n * ops + i))
                    .collect();
                let docs: Vec<String> = (0..ops)
                    .map(|i| json_text(document(plan.doc_bytes, self.client, n * ops + i)))
                    .collect();
                let done = if ops == 1 {
                    self.pg
                        .execute(&self.st.insert_one, &[&ids[0], &docs[0]])
                        .await
                } else {
                    self.pg.execute(&self.st.insert_many, &[&ids, &docs]).await
                };
                match done {
                    Ok(rows) if rows == ops => {
                        if plan.reads > 0 {
                            for id in ids {
                                self.written.add(id, &mut self.rng);
                            }
                        }
                        Outcome::Wrote(ops)
                    }
                    Ok(rows) => Outcome::Failed(format!("{rows} rows inserted of {ops}")),
                    Err(e) => Outcome::Failed(pg_error(&e)),
                }
            }
            Workload::W4 => {
                let id = format!("hot-{}", self.rng.below(self.ids));
                let version: i64 = match self.pg.query_one(&self.st.version, &[&id]).await {
                    Ok(row) => row.get(0),
                    Err(e) => return Outcome::Failed(pg_error(&e)),
                };
                let doc = json_text(document(plan.doc_bytes, self.client, n));
                match self
                    .pg
                    .execute(&self.st.update, &[&id, &doc, &version])
                    .await
                {
                    Ok(1) => Outcome::Wrote(1),
                    // Another client updated it first: the expected version is stale.
                    Ok(_) => Outcome::Aborted,
                    Err(e) => Outcome::Failed(pg_error(&e)),
                }
            }
            Workload::W5 => {
                let id = format!("{PRELOAD_PREFIX}{}", self.rng.below(self.ids));
                self.read(&id).await
            }
            Workload::W6 => {
                let n = self.rng.below(self.ids) as i64;
                match self.pg.query(&self.st.by_n, &[&n]).await {
                    Ok(rows) if rows.len() == 1 => Outcome::Read,
                    Ok(rows) => Outcome::Failed(format!("n = {n}: {} rows", rows.len())),
                    Err(e) => Outcome::Failed(pg_error(&e)),
                }
            }
            Workload::W7 => {
                let rows = W7_ROWS.min(self.ids);
                let n = self.rng.below(self.ids - rows + 1) as i64;
                let end = n + rows as i64;
                match self.pg.query(&self.st.n_range, &[&n, &end]).await {
                    Ok(got) if got.len() as u64 == rows => Outcome::Read,
                    Ok(got) => Outcome::Failed(format!("n in [{n}, {end}): {} rows", got.len())),
                    Err(e) => Outcome::Failed(pg_error(&e)),
                }
            }
        }
    }
}

impl Worker {
    /// Reads a document with its audit row's hash.
    async fn read(&mut self, id: &str) -> Outcome {
        match self.pg.query_opt(&self.st.read, &[&id]).await {
            Ok(Some(row)) => {
                let body: String = row.get(0);
                if body.is_empty() {
                    Outcome::Failed(format!("document {id} has an empty body"))
                } else {
                    Outcome::Read
                }
            }
            Ok(None) => Outcome::Failed(format!("document {id} is missing")),
            Err(e) => Outcome::Failed(pg_error(&e)),
        }
    }
}

/// Creates the schema `s` afresh.
async fn create_schema(pg: &PgClient, s: &str, chain: bool) -> anyhow::Result<()> {
    let chain = if chain {
        CHAIN.replace("{s}", s)
    } else {
        String::new()
    };
    let sql = SCHEMA.replace("{chain}", &chain).replace("{s}", s);
    pg.batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("creating schema {s}: {}", pg_error(&e)))
}

/// Inserts documents `w5-0` to `w5-{total-1}`, a few statements in flight.
async fn preload(
    url: &str,
    s: &str,
    total: u64,
    doc_bytes: usize,
    quiet: bool,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(quiet, "preload", Some(total), count.clone());
    let batches = total.div_ceil(PRELOAD_BATCH);
    let mut tasks = Vec::new();
    for worker in 0..PRELOAD_PARALLEL.min(batches) {
        let pg = connect(url).await?;
        let st = Statements::prepare(&pg, s).await?;
        let (next, count) = (next.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                let range = b * PRELOAD_BATCH..((b + 1) * PRELOAD_BATCH).min(total);
                let len = range.end - range.start;
                let ids: Vec<String> = range
                    .clone()
                    .map(|n| format!("{PRELOAD_PREFIX}{n}"))
                    .collect();
                let docs: Vec<String> = range
                    .map(|n| json_text(document(doc_bytes, worker as usize, n)))
                    .collect();
                pg.execute(&st.insert_many, &[&ids, &docs])
                    .await
                    .map_err(|e| anyhow::anyhow!("preload: {}", pg_error(&e)))?;
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

/// Runs the plan against PostgreSQL at `url`.
pub(super) async fn run(url: &str, args: &BenchArgs, plan: &Plan) -> anyhow::Result<Report> {
    let workload = plan.workload;
    let chain = !args.no_chain;
    let admin = connect(url).await?;
    let mut preloaded = None;
    let mut index_build = None;
    let (schema, ids) = match workload {
        Workload::W5 | Workload::W6 | Workload::W7 => {
            let s = if chain {
                "graven_bench_w5"
            } else {
                "graven_bench_w5_no_chain"
            };
            let wanted = args.preload.unwrap_or(DEFAULT_PRELOAD);
            if wanted == 0 {
                bail!("w5 needs documents to read: --preload must be at least 1");
            }
            // A table left by an earlier run with exactly `wanted` documents is reused.
            let existing = admin
                .query_one(&format!("SELECT count(*) FROM {s}.docs"), &[])
                .await
                .ok()
                .map(|row| row.get::<_, i64>(0));
            if existing == Some(wanted as i64) {
                preloaded = Some(0);
            } else {
                create_schema(&admin, s, chain).await?;
                preload(url, s, wanted, plan.doc_bytes, plan.quiet).await?;
                admin
                    .batch_execute(&format!("ANALYZE {s}.docs; ANALYZE {s}.docs_audit;"))
                    .await
                    .map_err(|e| anyhow::anyhow!("analyze: {}", pg_error(&e)))?;
                preloaded = Some(wanted);
            }
            if matches!(workload, Workload::W6 | Workload::W7) {
                // The btree expression index on the JSONB field that w6 and w7 look up,
                // built (and timed) unless an earlier run left it.
                let had: bool = admin
                    .query_one(
                        &format!("SELECT to_regclass('{s}.docs_n') IS NOT NULL"),
                        &[],
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("looking for the index: {}", pg_error(&e)))?
                    .get(0);
                let started = std::time::Instant::now();
                admin
                    .execute(
                        &format!(
                            "CREATE INDEX IF NOT EXISTS docs_n ON {s}.docs (((body->>'n')::bigint))"
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("creating the index: {}", pg_error(&e)))?;
                if !had {
                    index_build = Some((wanted, started.elapsed().as_secs_f64()));
                }
                admin
                    .batch_execute(&format!("ANALYZE {s}.docs"))
                    .await
                    .map_err(|e| anyhow::anyhow!("analyze: {}", pg_error(&e)))?;
            }
            (s, wanted)
        }
        _ => {
            let s = "graven_bench";
            create_schema(&admin, s, chain).await?;
            if workload == Workload::W4 {
                let ids: Vec<String> = (0..HOT_SET).map(|i| format!("hot-{i}")).collect();
                let docs: Vec<String> = (0..HOT_SET)
                    .map(|i| json_text(document(plan.doc_bytes, 0, i as u64)))
                    .collect();
                let st = Statements::prepare(&admin, s).await?;
                admin
                    .execute(&st.insert_many, &[&ids, &docs])
                    .await
                    .map_err(|e| anyhow::anyhow!("inserting the hot set: {}", pg_error(&e)))?;
            }
            (s, HOT_SET as u64)
        }
    };
    let shared = Arc::new(plan.clone());
    let mut workers = Vec::with_capacity(plan.clients);
    for client in 0..plan.clients {
        let pg = connect(url).await?;
        let st = Statements::prepare(&pg, schema).await?;
        workers.push(Worker {
            plan: shared.clone(),
            pg,
            st,
            client,
            n: 0,
            rng: Rng::new(client),
            ids,
            written: Remembered::new(),
        });
    }
    let totals = drive(plan, workers).await?;
    Ok(Report {
        target: if chain {
            "postgres"
        } else {
            "postgres-no-chain"
        },
        workload: workload.name().into(),
        clients: plan.clients,
        ledger: None,
        totals,
        conflicts: workload == Workload::W4,
        preloaded,
        index_build,
        indexes: 0,
    })
}
