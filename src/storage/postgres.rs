//! The PostgreSQL backend: every ledger's key spaces in one table of one database, so that
//! several graven servers can share it and PostgreSQL's own replication carries it.
//!
//! ```sql
//! graven_schema (version integer)                 -- the schema's version, one row
//! graven_ledger (ledger text PRIMARY KEY,          -- a row per ledger, locked by commits,
//!                writer text, address text,        -- and its write lease: who holds it,
//!                epoch bigint, lease_until timestamptz) -- which grant, until when
//! graven_kv (ledger text, space smallint, key bytea, value bytea,
//!            PRIMARY KEY (ledger, space, key))
//! ```
//!
//! `bytea` compares bytewise, shorter first on a common prefix: the order the storage
//! interface asks for. A view is one `REPEATABLE READ READ ONLY` transaction on a
//! connection of its own (its `BEGIN` sent with its first query), so all its reads see
//! one snapshot; a range read fetches pages of
//! [`PAGE_ROWS`] rows inside it, so memory stays bounded. A commit is one transaction
//! that first locks the ledger's `graven_ledger` row (an upsert, which also creates it),
//! so that the committers of one ledger take turns whichever servers they run on; then
//! checks the batch's condition; then writes every put with one `INSERT ... ON CONFLICT
//! DO UPDATE`, in two round trips (statements pipelined, each hot one prepared once per
//! connection: see [`commit_on`]). It returns once PostgreSQL has committed it (durable as
//! `synchronous_commit` makes it: see docs/DESIGN.md).
//!
//! The write lease lives in the ledger's row, so the lock a commit takes also fences it:
//! the upsert returns the lease's epoch, and a batch made under another epoch is refused
//! before anything is written. Lease times are the database's clock (`now()`), never a
//! server's, so servers whose clocks disagree still agree on who holds a lease.
//!
//! It uses only what CockroachDB and YugabyteDB also have (bytea, composite primary keys,
//! `ON CONFLICT`, `unnest` of arrays, row locks), but for the schema's creation.
//!
//! The client is tokio-postgres. The storage interface is synchronous (the sequencer and
//! the check run on threads of their own, reads on the caller's), so every query runs on
//! one small runtime of this module's, [`io`], and the caller waits for its answer on a
//! channel. That works from any thread, the tasks of another runtime included, where a
//! blocking client that drives its own runtime cannot be used.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::backend::{
    Backend, Batch, Claim, Holder, Lease, Leases, Read, Rows, Space, View, conflict, fenced,
};
use super::postgres_tls::{Target, target};
use super::{Error, ErrorKind, Result};

/// The schema version this build creates and reads. Version 1 had no write leases;
/// opening it adds their columns.
pub const SCHEMA_VERSION: i32 = 2;

/// How long a transaction may sit idle before PostgreSQL ends it: a frozen server's
/// commit then lets go of the ledger's lock, and another server can take over.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// Rows fetched per page of a range read.
const PAGE_ROWS: i64 = 1000;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        use tokio_postgres::error::SqlState;
        // No SQLSTATE: the connection failed or closed (the database down, restarting or
        // out of reach); so too a server that is shutting down or not yet up, and a
        // session the database ended because its transaction sat idle (this process was
        // paused in it): its transaction was rolled back, as on a lost connection.
        let unreachable = match e.code() {
            None => true,
            Some(code) => [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            ]
            .contains(code),
        };
        let kind = if unreachable {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Failed
        };
        // tokio-postgres's own text is only the kind ("db error"); the causes say what
        // happened (the server's message, the TLS or socket error).
        let mut message = format!("PostgreSQL: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message = format!("{message}: {c}");
            cause = c.source();
        }
        let mut err = Error::caused(kind, e);
        err.message = message;
        err
    }
}

/// The runtime every PostgreSQL query of the process runs on: its connections' drivers
/// and their queries. Two threads: the database is across a network, not on this CPU.
fn io() -> Result<&'static tokio::runtime::Runtime> {
    static IO: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("graven-postgres")
            .enable_all()
            .build()
    })
    .as_ref()
    .map_err(|e| {
        Error::new(
            ErrorKind::Failed,
            format!("starting PostgreSQL's runtime: {e}"),
        )
    })
}

/// Runs `work` and waits for its result, from any thread: polled here, between parks,
/// in [`io`]'s context, while the connections' drivers on [`io`] do the I/O. (Spawning it
/// onto [`io`] and waiting for its answer cost one more thread wake-up per query.)
fn run<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let _io = io()?.enter();
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut work = std::pin::pin!(work);
    loop {
        if let std::task::Poll::Ready(answer) = work.as_mut().poll(&mut cx) {
            return answer;
        }
        std::thread::park();
    }
}

/// A connection, with the statements it has prepared: each hot query is parsed once per
/// connection and then runs in one round trip (unprepared, tokio-postgres spends one
/// round trip preparing a query and another running it).
struct Conn {
    client: Client,
    prepared: Mutex<HashMap<&'static str, Statement>>,
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Conn {
    /// `sql`, prepared on this connection (the first time it is asked for).
    async fn statement(&self, sql: &'static str) -> Result<Statement> {
        let known = self.prepared.lock().ok().and_then(|p| p.get(sql).cloned());
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        if let Ok(mut p) = self.prepared.lock() {
            p.insert(sql, statement.clone());
        }
        Ok(statement)
    }
}

/// Idle connections, shared with the views that borrow one.
type Pool = Arc<Mutex<Vec<Arc<Conn>>>>;

/// An idle connection of `pool` that is still open, if there is one.
fn idle_connection(pool: &Pool) -> Option<Arc<Conn>> {
    let mut idle = pool.lock().ok()?;
    while let Some(c) = idle.pop() {
        if !c.is_closed() {
            return Some(c);
        }
    }
    None
}

/// A connection: an idle one of `pool`, or a new one to `to`, its driver on [`io`].
async fn connection(pool: &Pool, to: &Target) -> Result<Arc<Conn>> {
    if let Some(c) = idle_connection(pool) {
        return Ok(c);
    }
    let (client, driver) = to.config.connect(to.tls.clone()).await?;
    tokio::spawn(async move {
        // It ends when the client is dropped or the server goes; queries then fail.
        let _ = driver.await;
    });
    // A server frozen inside a commit (paused, swapped out, cut off) must not hold the
    // ledger's row lock, and so its lease, for ever: PostgreSQL ends such a transaction.
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            IDLE_IN_TRANSACTION.as_millis()
        ))
        .await?;
    Ok(Arc::new(Conn {
        client,
        prepared: Mutex::new(HashMap::new()),
    }))
}

/// Returns a connection to the pool.
fn give_back(pool: &Pool, client: Arc<Conn>) {
    if let Ok(mut idle) = pool.lock() {
        idle.push(client);
    }
}

/// One ledger's key spaces in a PostgreSQL database.
pub struct PostgresBackend {
    /// Where the database is, and how to reach it.
    to: Arc<Target>,
    ledger: Arc<str>,
    spaces: &'static [&'static str],
    /// Idle connections, reused by views and commits.
    idle: Pool,
}

impl PostgresBackend {
    /// Connects to the database at `url` (a `postgresql://` URL, or key=value settings),
    /// creating graven's schema if the database has none and refusing a newer one (once
    /// per database and process: every ledger's backend connects).
    pub fn connect(
        url: &str,
        ledger: &str,
        spaces: &'static [&'static str],
    ) -> Result<PostgresBackend> {
        let backend = PostgresBackend {
            to: Arc::new(target(url)?),
            ledger: ledger.into(),
            spaces,
            idle: Pool::default(),
        };
        static READY: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let ready = |url: &str| READY.lock().is_ok_and(|r| r.iter().any(|u| u == url));
        if !ready(url) {
            run(async {
                let client = connection(&backend.idle, &backend.to).await?;
                create_schema(&client).await?;
                give_back(&backend.idle, client);
                Ok(())
            })?;
            if let Ok(mut r) = READY.lock() {
                r.push(url.to_owned());
            }
        }
        Ok(backend)
    }
}

impl PostgresBackend {
    /// Whether `url` can be used: its settings known, its certificate files readable.
    /// Nothing is connected to.
    pub fn check_url(url: &str) -> Result<()> {
        target(url).map(|_| ())
    }

    /// Whether the database at `url` answers (a new connection and `SELECT 1`).
    pub fn ping(url: &str) -> Result<()> {
        let to = target(url)?;
        run(async move {
            let client = connection(&Pool::default(), &to).await?;
            client.batch_execute("SELECT 1").await?;
            Ok(())
        })
    }

    /// Removes every key space of `ledger` from the database at `url`.
    pub fn destroy(url: &str, ledger: &str) -> Result<()> {
        let (to, ledger) = (target(url)?, ledger.to_owned());
        run(async move {
            let client = connection(&Pool::default(), &to).await?;
            client.batch_execute("BEGIN").await?;
            client
                .execute("DELETE FROM graven_kv WHERE ledger = $1", &[&ledger])
                .await?;
            client
                .execute("DELETE FROM graven_ledger WHERE ledger = $1", &[&ledger])
                .await?;
            client.batch_execute("COMMIT").await?;
            Ok(())
        })
    }
}

/// Creates graven's tables where they are missing, and checks the schema's version.
///
/// `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent creation (two servers
/// starting on an empty database): the loser gets a unique violation in PostgreSQL's
/// catalog, and simply tries again, finding the tables there.
async fn create_schema(client: &Client) -> Result<()> {
    use tokio_postgres::error::SqlState;
    let mut attempts = 0;
    loop {
        let outcome = client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS graven_schema (version integer NOT NULL);
                 CREATE TABLE IF NOT EXISTS graven_ledger (
                     ledger text PRIMARY KEY,
                     writer text,
                     address text,
                     epoch bigint NOT NULL DEFAULT 0,
                     lease_until timestamptz);
                 CREATE TABLE IF NOT EXISTS graven_kv (
                     ledger text NOT NULL,
                     space smallint NOT NULL,
                     key bytea NOT NULL,
                     value bytea NOT NULL,
                     PRIMARY KEY (ledger, space, key));",
            )
            .await;
        match outcome {
            Ok(()) => break,
            Err(e)
                if attempts < 3
                    && matches!(
                        e.code(),
                        Some(&SqlState::UNIQUE_VIOLATION | &SqlState::DUPLICATE_TABLE)
                    ) =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The version row, once: the table lock makes two first starts take turns.
    client
        .batch_execute("BEGIN; LOCK TABLE graven_schema IN EXCLUSIVE MODE")
        .await?;
    let version: Option<i32> = client
        .query_opt("SELECT version FROM graven_schema", &[])
        .await?
        .map(|r| r.get(0));
    let outcome = match version {
        None => client
            .execute(
                "INSERT INTO graven_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map(|_| ())
            .map_err(Error::from),
        Some(v) if v > SCHEMA_VERSION => Err(Error::new(
            ErrorKind::Failed,
            format!(
                "the database's graven schema is version {v}, newer than this build's \
                 {SCHEMA_VERSION}: upgrade graven"
            ),
        )),
        Some(1) => upgrade_from_1(client).await,
        Some(_) => Ok(()),
    };
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    client.batch_execute(end).await?;
    outcome
}

/// Schema 1 to 2: the write lease's columns. Inside [`create_schema`]'s transaction.
async fn upgrade_from_1(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "ALTER TABLE graven_ledger ADD COLUMN IF NOT EXISTS writer text, \
             ADD COLUMN IF NOT EXISTS address text, \
             ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0, \
             ADD COLUMN IF NOT EXISTS lease_until timestamptz; \
             UPDATE graven_schema SET version = 2",
        )
        .await?;
    Ok(())
}

/// Milliseconds as PostgreSQL's `float8`, for `$n * interval '1 millisecond'`.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A remaining time in milliseconds from the database, as a duration (never negative).
fn remaining(ms: Option<f64>) -> Duration {
    Duration::from_secs_f64(ms.unwrap_or(0.0).max(0.0) / 1000.0)
}

impl PostgresBackend {
    /// Runs one statement-level lease query on a pooled connection.
    fn lease_query<T, F>(&self, query: impl FnOnce(Arc<Conn>, Arc<str>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        run(async {
            let client = connection(&self.idle, &self.to).await?;
            let outcome = query(client.clone(), self.ledger.clone()).await;
            if outcome.is_ok() {
                give_back(&self.idle, client);
            }
            outcome
        })
    }
}

impl Leases for PostgresBackend {
    fn claim(&self, holder: Holder<'_>, ttl: Duration) -> Result<Claim> {
        let (id, address, ttl) = (holder.id.to_owned(), holder.address.to_owned(), millis(ttl));
        self.lease_query(move |c, ledger| async move {
            // One round trip: the claim, and (from the statement's snapshot, before it)
            // who held the lease when it was refused.
            let row = c
                .query_one(
                    "WITH claimed AS ( \
                       INSERT INTO graven_ledger AS l (ledger, writer, address, epoch, lease_until) \
                       VALUES ($1, $2, $3, 1, now() + $4 * interval '1 millisecond') \
                       ON CONFLICT (ledger) DO UPDATE SET writer = excluded.writer, \
                         address = excluded.address, epoch = l.epoch + 1, \
                         lease_until = excluded.lease_until \
                       WHERE l.lease_until IS NULL OR l.lease_until < now() \
                         OR l.writer = excluded.writer \
                       RETURNING l.epoch) \
                     SELECT (SELECT epoch FROM claimed), \
                       (SELECT address FROM graven_ledger WHERE ledger = $1), \
                       (SELECT (extract(epoch FROM lease_until - now()) * 1000)::float8 \
                          FROM graven_ledger WHERE ledger = $1)",
                    &[&&*ledger, &id, &address, &ttl],
                )
                .await?;
            let epoch: Option<i64> = row.get(0);
            Ok(match epoch {
                Some(epoch) => Claim::Granted(Lease {
                    epoch: u64::try_from(epoch).unwrap_or_default(),
                }),
                None => Claim::Held {
                    address: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    remaining: remaining(row.get(2)),
                },
            })
        })
    }

    fn renew(&self, lease: Lease, ttl: Duration) -> Result<bool> {
        let (epoch, ttl) = (lease.epoch as i64, millis(ttl));
        self.lease_query(move |c, ledger| async move {
            let n = c
                .execute(
                    "UPDATE graven_ledger SET lease_until = now() + $3 * interval '1 millisecond' \
                     WHERE ledger = $1 AND epoch = $2",
                    &[&&*ledger, &epoch, &ttl],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn release(&self, lease: Lease) -> Result<()> {
        let epoch = lease.epoch as i64;
        self.lease_query(move |c, ledger| async move {
            c.execute(
                "UPDATE graven_ledger SET lease_until = NULL WHERE ledger = $1 AND epoch = $2",
                &[&&*ledger, &epoch],
            )
            .await?;
            Ok(())
        })
    }

    fn holder(&self) -> Result<Option<(String, Duration)>> {
        self.lease_query(move |c, ledger| async move {
            let row = c
                .query_opt(
                    "SELECT address, (extract(epoch FROM lease_until - now()) * 1000)::float8 \
                     FROM graven_ledger WHERE ledger = $1 AND lease_until > now()",
                    &[&&*ledger],
                )
                .await?;
            Ok(row.map(|r| {
                (
                    r.get::<_, Option<String>>(0).unwrap_or_default(),
                    remaining(r.get(1)),
                )
            }))
        })
    }
}

/// The statements every commit and view run, prepared once per connection.
const LOCK_LEDGER: &str = "INSERT INTO graven_ledger (ledger) VALUES ($1) \
     ON CONFLICT (ledger) DO UPDATE SET ledger = excluded.ledger RETURNING epoch";
const LAST_KEY: &str = "SELECT key FROM graven_kv WHERE ledger = $1 AND space = $2 \
     ORDER BY key DESC LIMIT 1";
const PUT_ROWS: &str = "INSERT INTO graven_kv (ledger, space, key, value) \
     SELECT $1, s, k, v FROM unnest($2::smallint[], $3::bytea[], $4::bytea[]) AS t(s, k, v) \
     ON CONFLICT (ledger, space, key) DO UPDATE SET value = excluded.value";
const DELETE_ROWS: &str = "DELETE FROM graven_kv WHERE ledger = $1 AND (space, key) IN \
     (SELECT s, k FROM unnest($2::smallint[], $3::bytea[]) AS t(s, k))";
const GET: &str = "SELECT value FROM graven_kv WHERE ledger = $1 AND space = $2 AND key = $3";
/// Values of (space, key) pairs (NULL where none), each with its position in the arrays
/// (1-based): one statement for many reads, which costs PostgreSQL less than a statement
/// per read. A subquery per pair, so that each is one index lookup whatever the plan (a
/// join may scan the ledger's rows).
const GET_MANY: &str = "SELECT t.at, (SELECT value FROM graven_kv kv \
     WHERE kv.ledger = $1 AND kv.space = t.space AND kv.key = t.key) \
     FROM unnest($2::smallint[], $3::bytea[]) WITH ORDINALITY AS t(space, key, at)";
const COUNT: &str = "SELECT count(*) FROM graven_kv WHERE ledger = $1 AND space = $2";
const BEGIN_VIEW: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

impl Backend for PostgresBackend {
    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }

    fn remote(&self) -> bool {
        true
    }

    fn view(&self) -> Result<Box<dyn View>> {
        let client = match idle_connection(&self.idle) {
            Some(c) => c,
            None => run(connection(&self.idle, &self.to))?,
        };
        Ok(Box::new(PostgresView {
            client: Some(client),
            begun: std::sync::atomic::AtomicBool::new(false),
            ledger: self.ledger.clone(),
            pool: self.idle.clone(),
        }))
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        let expect = batch
            .expect_last
            .as_ref()
            .map(|(space, key)| (space.0 as i16, self.spaces[space.0], key.clone()));
        run(async {
            let client = connection(&self.idle, &self.to).await?;
            let outcome = commit_on(&client, &self.ledger, &batch, expect).await;
            // A refused batch leaves the connection fine; a failed one may not.
            if outcome
                .as_ref()
                .map_or_else(|e| e.kind() == ErrorKind::Conflict, |()| true)
            {
                give_back(&self.idle, client);
            }
            outcome
        })
    }
}

/// One commit's transaction in two round trips, each a pipeline of statements that
/// PostgreSQL runs in order: `BEGIN`, lock the ledger's row (reading the lease's epoch
/// under the lock) and read the journal's last key; then, if the fence and the condition
/// hold, write every put and `COMMIT`. (A failed write makes that `COMMIT` a rollback.)
async fn commit_on(
    client: &Conn,
    ledger: &str,
    batch: &Batch,
    expect: Option<(i16, &'static str, Option<Vec<u8>>)>,
) -> Result<()> {
    let (lock, last, put, delete) = (
        client.statement(LOCK_LEDGER).await?,
        client.statement(LAST_KEY).await?,
        client.statement(PUT_ROWS).await?,
        client.statement(DELETE_ROWS).await?,
    );
    let begin = if batch.defer_durability {
        "BEGIN; SET LOCAL synchronous_commit = off"
    } else {
        "BEGIN"
    };
    let space = expect.as_ref().map_or(0, |(space, _, _)| *space);
    // One committer per ledger at a time: the upsert locks the ledger's row until the
    // transaction ends (and creates it for the ledger's first batch). The lease's epoch
    // and the journal's last key are read under that lock: no claim and no other
    // commit can slip in before this one ends.
    let (lock_params, last_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) =
        ([&ledger], [&ledger, &space]);
    let (begun, epoch, found) = tokio::join!(
        client.batch_execute(begin),
        client.query_one(&lock, &lock_params),
        client.query_opt(&last, &last_params),
    );
    let checked = (|| {
        begun?;
        let epoch: i64 = epoch?.get(0);
        if let Some(fence) = batch.fence
            && fence.epoch as i64 != epoch
        {
            return Err(fenced(fence, u64::try_from(epoch).unwrap_or_default()));
        }
        if let Some((_, name, expected)) = &expect {
            let found: Option<Vec<u8>> = found?.map(|r| r.get(0));
            if found != *expected {
                return Err(conflict(name, expected.as_deref(), found.as_deref()));
            }
        }
        Ok(())
    })();
    if let Err(e) = checked {
        client.batch_execute("ROLLBACK").await?;
        return Err(e);
    }
    let spaces: Vec<i16> = batch.puts.iter().map(|(s, _, _)| s.0 as i16).collect();
    let keys: Vec<&[u8]> = batch.puts.iter().map(|(_, k, _)| k.as_slice()).collect();
    let values: Vec<&[u8]> = batch.puts.iter().map(|(_, _, v)| v.as_slice()).collect();
    let put_params: [&(dyn ToSql + Sync); 4] = [&ledger, &spaces, &keys, &values];
    let gone_spaces: Vec<i16> = batch.deletes.iter().map(|(s, _)| s.0 as i16).collect();
    let gone_keys: Vec<&[u8]> = batch.deletes.iter().map(|(_, k)| k.as_slice()).collect();
    let delete_params: [&(dyn ToSql + Sync); 3] = [&ledger, &gone_spaces, &gone_keys];
    // The statements a batch needs, pipelined with its COMMIT (which a failed one makes a
    // rollback).
    let writes = async {
        if !batch.puts.is_empty() {
            client.execute(&put, &put_params).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let deletes = async {
        if !batch.deletes.is_empty() {
            client.execute(&delete, &delete_params).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let (written, deleted, committed) =
        tokio::join!(writes, deletes, client.batch_execute("COMMIT"));
    written?;
    deleted?;
    Ok(committed?)
}

/// One read-only transaction.
struct PostgresView {
    client: Option<Arc<Conn>>,
    /// Whether its transaction has begun: `BEGIN` goes with the view's first query.
    begun: std::sync::atomic::AtomicBool,
    ledger: Arc<str>,
    /// Where the connection goes back when the view ends.
    pool: Pool,
}

impl Drop for PostgresView {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let pool = self.pool.clone();
            if !self.begun.load(std::sync::atomic::Ordering::Relaxed) {
                give_back(&pool, client);
                return;
            }
            // A read-only transaction has nothing to keep; a connection that cannot end
            // it is dropped rather than reused. Nobody waits for this.
            if let Ok(io) = io() {
                io.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_ok() {
                        give_back(&pool, client);
                    }
                });
            }
        }
    }
}

impl PostgresView {
    /// Runs a query of this view's transaction.
    fn query<T, F>(&self, query: impl FnOnce(Arc<Conn>, Arc<str>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let client = self
            .client
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Failed, "the view's connection is gone"))?;
        let work = query(client.clone(), self.ledger.clone());
        if self.begun.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return run(work);
        }
        // The first query: its transaction's BEGIN goes in the same round trip, ahead.
        run(async move {
            let (begun, answer) = tokio::join!(client.batch_execute(BEGIN_VIEW), work);
            begun?;
            answer
        })
    }

    /// Up to [`PAGE_ROWS`] rows of `space` from `start` to `end`.
    fn page(
        &self,
        space: i16,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let split = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) => (Some(k.clone()), true),
            Bound::Excluded(k) => (Some(k.clone()), false),
            Bound::Unbounded => (None, true),
        };
        let ((lower, lower_in), (upper, upper_in)) = (split(start), split(end));
        self.query(move |c, ledger| async move {
            let rows = c
                .query(
                    "SELECT key, value FROM graven_kv WHERE ledger = $1 AND space = $2 \
                     AND ($3::bytea IS NULL OR key > $3 OR ($4 AND key = $3)) \
                     AND ($5::bytea IS NULL OR key < $5 OR ($6 AND key = $5)) \
                     ORDER BY key LIMIT $7",
                    &[
                        &&*ledger, &space, &lower, &lower_in, &upper, &upper_in, &PAGE_ROWS,
                    ],
                )
                .await?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl View for PostgresView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (space, key) = (space.0 as i16, key.to_vec());
        self.query(move |c, ledger| async move {
            let get = c.statement(GET).await?;
            Ok(c.query_opt(&get, &[&&*ledger, &space, &key])
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn read_many(&self, reads: &[Read]) -> Result<Vec<Option<Vec<u8>>>> {
        let (mut positions, mut spaces, mut keys, mut lasts) = (vec![], vec![], vec![], vec![]);
        for (at, read) in reads.iter().enumerate() {
            match read {
                Read::Get(space, key) => {
                    positions.push(at);
                    spaces.push(space.0 as i16);
                    keys.push(key.clone());
                }
                Read::Last(space) => lasts.push((at, space.0 as i16)),
            }
        }
        let n = reads.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        self.query(move |c, ledger| async move {
            let (ledger, c): (&str, &Conn) = (&ledger, &c);
            // Every query is sent before any answer is awaited: one round trip in all.
            type Answers = Result<Vec<(usize, Option<Vec<u8>>)>>;
            let mut queries: Vec<std::pin::Pin<Box<dyn Future<Output = Answers> + Send + '_>>> =
                Vec::new();
            match keys.len() {
                0 => {}
                1 => {
                    let get = c.statement(GET).await?;
                    let (at, space, key) = (positions[0], spaces[0], &keys[0]);
                    queries.push(Box::pin(async move {
                        let row = c.query_opt(&get, &[&ledger, &space, key]).await?;
                        Ok(vec![(at, row.map(|r| r.get(0)))])
                    }));
                }
                _ => {
                    let get_many = c.statement(GET_MANY).await?;
                    let (positions, spaces, keys) = (&positions, &spaces, &keys);
                    queries.push(Box::pin(async move {
                        let rows = c.query(&get_many, &[&ledger, spaces, keys]).await?;
                        let mut found = Vec::with_capacity(rows.len());
                        for row in rows {
                            let at: i64 = row.get(0);
                            // Positions count from 1, up to the arrays' length.
                            let at = usize::try_from(at - 1)
                                .ok()
                                .and_then(|i| positions.get(i))
                                .ok_or_else(|| {
                                    Error::new(
                                        ErrorKind::Failed,
                                        "PostgreSQL: a read's position is out of range",
                                    )
                                })?;
                            found.push((*at, row.get(1)));
                        }
                        Ok(found)
                    }));
                }
            }
            if !lasts.is_empty() {
                let last = c.statement(LAST_KEY).await?;
                for &(at, space) in &lasts {
                    let last = last.clone();
                    queries.push(Box::pin(async move {
                        let row = c.query_opt(&last, &[&ledger, &space]).await?;
                        Ok(vec![(at, row.map(|r| r.get(0)))])
                    }));
                }
            }
            let mut answers = vec![None; n];
            for part in futures_util::future::try_join_all(queries).await? {
                for (at, answer) in part {
                    answers[at] = answer;
                }
            }
            Ok(answers)
        })
    }

    fn range<'a>(
        &'a self,
        space: Space,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Rows<'a>> {
        Ok(Box::new(Pages {
            view: self,
            space: space.0 as i16,
            next: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            buffer: VecDeque::new(),
            done: false,
        }))
    }

    fn last_key(&self, space: Space) -> Result<Option<Vec<u8>>> {
        let space = space.0 as i16;
        self.query(move |c, ledger| async move {
            let last = c.statement(LAST_KEY).await?;
            Ok(c.query_opt(&last, &[&&*ledger, &space])
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn len(&self, space: Space) -> Result<u64> {
        let space = space.0 as i16;
        self.query(move |c, ledger| async move {
            let count = c.statement(COUNT).await?;
            let n: i64 = c.query_one(&count, &[&&*ledger, &space]).await?.get(0);
            // count(*) is never negative.
            Ok(u64::try_from(n).unwrap_or_default())
        })
    }
}

/// A range read, a page at a time.
struct Pages<'a> {
    view: &'a PostgresView,
    space: i16,
    /// Where the next page starts.
    next: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buffer: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Iterator for Pages<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            match self.view.page(self.space, &self.next, &self.end) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE_ROWS;
                    if let Some((last, _)) = rows.last() {
                        self.next = Bound::Excluded(last.clone());
                    }
                    self.buffer.extend(rows);
                }
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}
