//! The PostgreSQL backend: every ledger's key spaces in one table of one database, so that
//! several graven servers can share it and PostgreSQL's own replication carries it.
//!
//! ```sql
//! graven_schema (version integer)                 -- the schema's version, one row
//! graven_ledger (ledger text PRIMARY KEY)          -- a row per ledger, locked by commits
//! graven_kv (ledger text, space smallint, key bytea, value bytea,
//!            PRIMARY KEY (ledger, space, key))
//! ```
//!
//! `bytea` compares bytewise, shorter first on a common prefix: the order the storage
//! interface asks for. A view is one `REPEATABLE READ READ ONLY` transaction on a
//! connection of its own, so all its reads see one snapshot; a range read fetches pages of
//! [`PAGE_ROWS`] rows inside it, so memory stays bounded. A commit is one transaction
//! that first locks the ledger's `graven_ledger` row (an upsert, which also creates it),
//! so that the committers of one ledger take turns whichever servers they run on; then
//! checks the batch's condition; then writes every put with one `INSERT ... ON CONFLICT
//! DO UPDATE`. It returns once PostgreSQL has committed it (durable as
//! `synchronous_commit` makes it: see docs/DESIGN.md).
//!
//! It uses only what CockroachDB and YugabyteDB also have (bytea, composite primary keys,
//! `FOR UPDATE`, `unnest` of arrays, `ON CONFLICT`); the client is `postgres`, the
//! blocking face of tokio-postgres, because the storage interface is synchronous (the
//! sequencer and the check run on threads of their own).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use postgres::{Client, NoTls};

use super::backend::{Backend, Batch, Rows, Space, View, conflict};
use super::{Error, ErrorKind, Result};

/// The schema version this build creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Rows fetched per page of a range read.
const PAGE_ROWS: i64 = 1000;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::caused(ErrorKind::Failed, e)
    }
}

/// One ledger's key spaces in a PostgreSQL database.
pub struct PostgresBackend {
    url: String,
    ledger: String,
    spaces: &'static [&'static str],
    /// Idle connections, reused by views and commits.
    idle: Pool,
}

/// Idle connections, shared with the views that borrow one.
type Pool = Arc<Mutex<Vec<Client>>>;

/// Returns a connection to the pool.
fn give_back(pool: &Pool, client: Client) {
    if let Ok(mut idle) = pool.lock() {
        idle.push(client);
    }
}

impl PostgresBackend {
    /// Connects to the database at `url` (a `postgresql://` URL, or key=value settings),
    /// creating graven's schema if the database has none and refusing a newer one.
    pub fn connect(
        url: &str,
        ledger: &str,
        spaces: &'static [&'static str],
    ) -> Result<PostgresBackend> {
        let backend = PostgresBackend {
            url: url.to_owned(),
            ledger: ledger.to_owned(),
            spaces,
            idle: Pool::default(),
        };
        let mut client = backend.client()?;
        create_tables(&mut client)?;
        let mut tx = client.transaction()?;
        tx.batch_execute("LOCK TABLE graven_schema IN EXCLUSIVE MODE")?;
        let version: Option<i32> = tx
            .query_opt("SELECT version FROM graven_schema", &[])?
            .map(|r| r.get(0));
        match version {
            None => {
                tx.execute(
                    "INSERT INTO graven_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::new(
                    ErrorKind::Failed,
                    format!(
                        "the database's graven schema is version {v}, newer than this build's \
                         {SCHEMA_VERSION}: upgrade graven"
                    ),
                ));
            }
            Some(_) => {}
        }
        tx.commit()?;
        give_back(&backend.idle, client);
        Ok(backend)
    }

    /// An idle connection, or a new one.
    fn client(&self) -> Result<Client> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut idle| idle.pop())
            && !c.is_closed()
        {
            return Ok(c);
        }
        Ok(Client::connect(&self.url, NoTls)?)
    }

    fn space(&self, space: Space) -> i16 {
        // At most a few key spaces: their positions fit.
        space.0 as i16
    }
}

/// Creates graven's tables where they are missing. `CREATE TABLE IF NOT EXISTS` is not
/// safe against a concurrent creation (two servers starting on an empty database): the
/// loser gets a unique violation in PostgreSQL's catalog, and simply tries again, finding
/// the tables there.
fn create_tables(client: &mut Client) -> Result<()> {
    use postgres::error::SqlState;
    let mut attempts = 0;
    loop {
        let outcome = client.batch_execute(
            "CREATE TABLE IF NOT EXISTS graven_schema (version integer NOT NULL);
             CREATE TABLE IF NOT EXISTS graven_ledger (ledger text PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS graven_kv (
                 ledger text NOT NULL,
                 space smallint NOT NULL,
                 key bytea NOT NULL,
                 value bytea NOT NULL,
                 PRIMARY KEY (ledger, space, key));",
        );
        match outcome {
            Ok(()) => return Ok(()),
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
}

impl Backend for PostgresBackend {
    fn view(&self) -> Result<Box<dyn View>> {
        let mut client = self.client()?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        Ok(Box::new(PostgresView {
            client: RefCell::new(Some(client)),
            ledger: self.ledger.clone(),
            pool: self.idle.clone(),
        }))
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        let mut client = self.client()?;
        let outcome = self.commit_on(&mut client, &batch);
        // A refused batch leaves the connection fine; a failed one may not.
        if outcome
            .as_ref()
            .map_or_else(|e| e.kind() == ErrorKind::Conflict, |()| true)
        {
            give_back(&self.idle, client);
        }
        outcome
    }
}

impl PostgresBackend {
    /// One commit's transaction on `client`: lock, check, write, commit.
    fn commit_on(&self, client: &mut Client, batch: &Batch) -> Result<()> {
        let mut tx = client.transaction()?;
        if batch.defer_durability {
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        }
        // One committer per ledger at a time: the upsert locks the ledger's row until the
        // transaction ends (and creates it for the ledger's first batch).
        tx.execute(
            "INSERT INTO graven_ledger (ledger) VALUES ($1) \
             ON CONFLICT (ledger) DO UPDATE SET ledger = excluded.ledger",
            &[&self.ledger],
        )?;
        if let Some((space, expected)) = &batch.expect_last {
            let found: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT key FROM graven_kv WHERE ledger = $1 AND space = $2 \
                     ORDER BY key DESC LIMIT 1",
                    &[&self.ledger, &self.space(*space)],
                )?
                .map(|r| r.get(0));
            if found != *expected {
                return Err(conflict(
                    self.spaces[space.0],
                    expected.as_deref(),
                    found.as_deref(),
                ));
            }
        }
        if !batch.puts.is_empty() {
            let spaces: Vec<i16> = batch.puts.iter().map(|(s, _, _)| self.space(*s)).collect();
            let keys: Vec<&[u8]> = batch.puts.iter().map(|(_, k, _)| k.as_slice()).collect();
            let values: Vec<&[u8]> = batch.puts.iter().map(|(_, _, v)| v.as_slice()).collect();
            tx.execute(
                "INSERT INTO graven_kv (ledger, space, key, value) \
                 SELECT $1, s, k, v FROM unnest($2::smallint[], $3::bytea[], $4::bytea[]) \
                 AS t(s, k, v) \
                 ON CONFLICT (ledger, space, key) DO UPDATE SET value = excluded.value",
                &[&self.ledger, &spaces, &keys, &values],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// One read-only transaction.
struct PostgresView {
    client: RefCell<Option<Client>>,
    ledger: String,
    /// Where the connection goes back when the view ends.
    pool: Pool,
}

impl Drop for PostgresView {
    fn drop(&mut self) {
        if let Some(mut client) = self.client.get_mut().take() {
            // A read-only transaction has nothing to keep; a connection that cannot end
            // it is dropped rather than reused.
            if client.batch_execute("ROLLBACK").is_ok() {
                give_back(&self.pool, client);
            }
        }
    }
}

impl PostgresView {
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut slot = self.client.borrow_mut();
        let client = slot
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Failed, "the view's connection is gone"))?;
        f(client)
    }

    /// Up to [`PAGE_ROWS`] rows of `space` after `after` (or from `start`), before `end`.
    fn page(
        &self,
        space: i16,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (lower, lower_inclusive) = match start {
            Bound::Included(k) => (Some(k.as_slice()), true),
            Bound::Excluded(k) => (Some(k.as_slice()), false),
            Bound::Unbounded => (None, true),
        };
        let (upper, upper_inclusive) = match end {
            Bound::Included(k) => (Some(k.as_slice()), true),
            Bound::Excluded(k) => (Some(k.as_slice()), false),
            Bound::Unbounded => (None, true),
        };
        self.with(|c| {
            let rows = c.query(
                "SELECT key, value FROM graven_kv WHERE ledger = $1 AND space = $2 \
                 AND ($3::bytea IS NULL OR key > $3 OR ($4 AND key = $3)) \
                 AND ($5::bytea IS NULL OR key < $5 OR ($6 AND key = $5)) \
                 ORDER BY key LIMIT $7",
                &[
                    &self.ledger,
                    &space,
                    &lower,
                    &lower_inclusive,
                    &upper,
                    &upper_inclusive,
                    &PAGE_ROWS,
                ],
            )?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl View for PostgresView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT value FROM graven_kv WHERE ledger = $1 AND space = $2 AND key = $3",
                &[&self.ledger, &(space.0 as i16), &key],
            )?
            .map(|r| r.get(0)))
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

    fn last(&self, space: Space) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT key, value FROM graven_kv WHERE ledger = $1 AND space = $2 \
                 ORDER BY key DESC LIMIT 1",
                &[&self.ledger, &(space.0 as i16)],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn len(&self, space: Space) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM graven_kv WHERE ledger = $1 AND space = $2",
                    &[&self.ledger, &(space.0 as i16)],
                )?
                .get(0);
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
