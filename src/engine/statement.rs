//! Running statements ([`crate::query`]) against a ledger: the statements of one request
//! are one transaction, run on one snapshot, with each statement seeing the writes of the
//! ones before. Reads answer at once; writes become a transaction for the sequencer,
//! carrying what the statements read ([`ReadSet`]), so that it commits only if none of
//! it changed (docs/QUERY.md, "Transactions").

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::ledger::{Ledger, decode_entry};
use super::prepare::{Prepared, generate_ids, prepare};
use super::reads::{RangeRead, ReadSet};
use crate::error::{Error, Quote, Result};
use crate::json::{canonical, parse_document};
use crate::model::{
    DEFAULT_PAGE_SIZE, ExecuteRequest, Executed, Limits, PathStep, RequestOp, ResultRow,
    TransactRequest, TreeSize, path_text,
};
use crate::query::ast::{IndexRef, Statement};
use crate::query::eval::rfc3339;
use crate::query::exec::{self, Data, Doc, Row};
use crate::query::parser;
use crate::storage::{
    DefState, DefsCache, DocRow, IndexDef, Snapshot, ValueRange, encode_value, value_at,
};

/// A parsed request: its texts' statements, with their parameters.
#[derive(Debug, Clone)]
pub struct Parsed {
    texts: Vec<(Arc<parser::Parsed>, Arc<Vec<Value>>)>,
}

impl Parsed {
    /// Every statement with its text's parameters, in order.
    fn each(&self) -> impl Iterator<Item = (&Statement, &[Value])> {
        self.texts
            .iter()
            .flat_map(|(p, params)| p.statements.iter().map(move |s| (s, params.as_slice())))
    }

    /// Whether any statement writes (INSERT, UPDATE, DELETE; not EXPLAIN of one).
    pub fn writes(&self) -> bool {
        self.each().any(|(s, _)| {
            matches!(
                s,
                Statement::Insert { .. } | Statement::Update { .. } | Statement::Delete { .. }
            )
        })
    }
}

/// Statement texts parsed recently, so that an application sending the same statement
/// with new parameters (as QLDB's drivers do) does not parse it each time.
#[derive(Default)]
pub struct StatementCache {
    parsed: Mutex<HashMap<String, Arc<parser::Parsed>>>,
}

impl StatementCache {
    /// Most texts kept; past it the cache starts again empty.
    const TEXTS: usize = 1024;
    /// Longest text kept.
    const TEXT_BYTES: usize = 4096;

    fn parse(&self, text: &str) -> std::result::Result<Arc<parser::Parsed>, parser::ParseError> {
        if let Some(p) = self.parsed.lock().ok().and_then(|c| c.get(text).cloned()) {
            return Ok(p);
        }
        let parsed = Arc::new(parser::parse(text)?);
        if text.len() <= Self::TEXT_BYTES
            && let Ok(mut cache) = self.parsed.lock()
        {
            if cache.len() >= Self::TEXTS {
                cache.clear();
            }
            cache.insert(text.to_owned(), parsed.clone());
        }
        Ok(parsed)
    }
}

/// What a request asks of the engine once parsed.
pub enum Work {
    /// Reads and writes, run on a snapshot.
    Statements(Parsed),
    /// One DDL statement, for the sequencer.
    Ddl(Statement),
}

/// Parses a request's statements and parameters, within the limits; errors name the
/// statement (`statements[1]`) and the place in its text.
pub fn parse_request(
    request: &ExecuteRequest,
    limits: &Limits,
    cache: &StatementCache,
) -> Result<Work> {
    if request.statements.is_empty() {
        return Err(Error::invalid("statements: give at least one statement"));
    }
    let mut statements = Vec::new();
    for (i, s) in request.statements.iter().enumerate() {
        if s.text.len() > limits.max_statement_bytes {
            return Err(Error::exhausted(format!(
                "statements[{i}].text: {} bytes is over the limit of {}",
                s.text.len(),
                limits.max_statement_bytes
            )));
        }
        if s.parameters.len() > limits.max_parameters {
            return Err(Error::exhausted(format!(
                "statements[{i}].parameters: {} parameters is over the limit of {}",
                s.parameters.len(),
                limits.max_parameters
            )));
        }
        let parsed = cache
            .parse(&s.text)
            .map_err(|e| Error::invalid(format!("statements[{i}]: {e}")))?;
        if parsed.parameters != s.parameters.len() {
            return Err(Error::invalid(format!(
                "statements[{i}]: the text has {} parameter(s) (?), {} given",
                parsed.parameters,
                s.parameters.len()
            )));
        }
        let mut params = Vec::with_capacity(s.parameters.len());
        for (j, p) in s.parameters.iter().enumerate() {
            if p.len() > limits.max_document_bytes {
                return Err(Error::exhausted(format!(
                    "statements[{i}].parameters[{j}]: over the limit of {} bytes",
                    limits.max_document_bytes
                )));
            }
            params
                .push(parse_document_value(p.as_bytes()).map_err(|e| {
                    Error::invalid(format!("statements[{i}].parameters[{j}]: {e}"))
                })?);
        }
        statements.push((parsed, Arc::new(params)));
    }
    let parsed = Parsed { texts: statements };
    let ddl = |s: &Statement| {
        matches!(
            s,
            Statement::CreateTable { .. }
                | Statement::DropTable { .. }
                | Statement::CreateIndex { .. }
                | Statement::DropIndex { .. }
        )
    };
    if parsed.each().any(|(s, _)| ddl(s)) {
        let mut all = parsed.each();
        return match (all.next(), all.next()) {
            (Some((only, _)), None) => Ok(Work::Ddl(only.clone())),
            _ => Err(Error::invalid(
                "statements: CREATE and DROP run alone, not in a transaction with other statements",
            )),
        };
    }
    Ok(Work::Statements(parsed))
}

/// A JSON value of any kind (a parameter need not be a document), parsed as strictly as
/// documents are.
fn parse_document_value(text: &[u8]) -> std::result::Result<Value, String> {
    // Wrapped, so that the document parser's rules (no duplicate names, no integers a
    // double cannot hold) apply to any value.
    let mut wrapped = b"{\"v\":".to_vec();
    wrapped.extend_from_slice(text);
    wrapped.push(b'}');
    match parse_document(&wrapped) {
        Ok(Value::Object(mut m)) => m.remove("v").ok_or_else(|| "not JSON".to_owned()),
        Ok(_) => Err("not JSON".into()),
        Err(e) => Err(format!("not a JSON value: {e}")),
    }
}

/// The DDL statement's index path, for `DROP INDEX "name"` looked up among `defs`.
pub fn drop_index_path(
    table: &str,
    index: &IndexRef,
    defs: &[crate::model::IndexInfo],
) -> Result<Vec<PathStep>> {
    match index {
        IndexRef::Path(p) => Ok(p.clone()),
        IndexRef::Name(name) => defs
            .iter()
            .find(|d| path_text(&d.path) == *name)
            .map(|d| d.path.clone())
            .ok_or_else(|| {
                Error::not_found(format!(
                    "table {} has no index {}",
                    Quote(table),
                    Quote(name)
                ))
            }),
    }
}

/// A page token: the journal size the first page read, the rows before this page, and
/// a hash of the request, so that a token is used only with its own statement.
#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    size: u64,
    offset: u64,
    request: String,
}

fn request_hash(request: &ExecuteRequest) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in &request.statements {
        h.update((s.text.len() as u64).to_be_bytes());
        h.update(s.text.as_bytes());
        for p in &s.parameters {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// What running the statements on a snapshot gave: rows, and a transaction if they wrote.
pub struct Ran {
    /// The rows, by statement.
    pub rows: Vec<ResultRow>,
    /// The transaction to commit, if the statements wrote.
    pub tx: Option<Prepared>,
    /// The snapshot's journal size.
    pub size: u64,
    /// The next page's token.
    pub next_page: Option<String>,
}

impl Ledger {
    /// Runs parsed statements on a snapshot of now: the rows, and the transaction their
    /// writes make (to commit with [`Ledger::transact`]). A read of several pages checks,
    /// on each page after the first, that nothing it reads changed since the first:
    /// otherwise ABORTED (run it again).
    pub fn run_statements(
        &self,
        parsed: &Parsed,
        request: &ExecuteRequest,
        limits: &Limits,
        principal: &str,
    ) -> Result<Ran> {
        let snap = self.snapshot()?;
        let size = snap.size()?;
        // What was read matters to a transaction that writes, and to a page after the
        // first (checked against what changed since the first).
        let track = parsed.writes() || request.page_token.is_some();
        let data = Engine::new(&snap, &self.defs, size, limits, track);
        let mut rows: Vec<ResultRow> = Vec::new();
        for (n, (statement, params)) in parsed.each().enumerate() {
            let out = exec::run(statement, params, &data)?;
            rows.extend(out.into_iter().map(|r| result_row(n, r)));
        }
        let writes = data.ops()?;
        if !writes.is_empty() {
            let mut tx = prepare(
                TransactRequest {
                    ops: writes,
                    idempotency_key: None,
                },
                limits,
                principal,
            )?;
            tx.reads = Some(Box::new(data.reads.into_inner()));
            return Ok(Ran {
                rows,
                tx: Some(tx),
                size,
                next_page: None,
            });
        }
        // A read: one page of its rows.
        let page = request
            .page_size
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, limits.max_page_size.max(1)) as usize;
        let hash = request_hash(request);
        let offset = match &request.page_token {
            None => 0,
            Some(t) => {
                let token: Token = hex::decode(t)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .filter(|tok: &Token| tok.request == hash)
                    .ok_or_else(|| {
                        Error::invalid("page_token: not a token of this request's pages")
                    })?;
                let reads = data.reads.borrow();
                let mut check = reads.clone();
                check.base = token.size;
                if let Some(why) = changed_since(&snap, &check, size)? {
                    return Err(Error::aborted(format!(
                        "the rows changed since the first page ({why}); run the query again"
                    )));
                }
                token.offset as usize
            }
        };
        let total = rows.len();
        let rows: Vec<ResultRow> = rows.into_iter().skip(offset).take(page).collect();
        let next_page = (offset + rows.len() < total).then(|| {
            let token = Token {
                size,
                offset: (offset + rows.len()) as u64,
                request: hash,
            };
            hex::encode(serde_json::to_vec(&token).unwrap_or_default())
        });
        Ok(Ran {
            rows,
            tx: None,
            size,
            next_page,
        })
    }

    /// Runs a request's statements: reads answer from a snapshot; writes are committed as
    /// one transaction (ABORTED if what they read changed meanwhile).
    pub async fn execute_parsed(
        &self,
        parsed: &Parsed,
        request: &ExecuteRequest,
        limits: &Limits,
        principal: &str,
    ) -> Result<Executed> {
        let ran = self.run_statements(parsed, request, limits, principal)?;
        self.finish(ran, request.proof).await
    }

    /// Commits what [`Ledger::run_statements`] made, if anything, and adds proofs.
    pub async fn finish(&self, ran: Ran, proof: bool) -> Result<Executed> {
        let receipt = match ran.tx {
            Some(tx) => Some(self.transact(tx).await?),
            None => None,
        };
        let mut rows = ran.rows;
        if proof {
            let size = receipt.as_ref().map_or(ran.size, |r| r.tree_size);
            for row in rows.iter_mut() {
                if let Some(index) = row.index {
                    row.proof = Some(self.prove_inclusion(index, TreeSize::At(size))?);
                    row.entry = Some(self.entry(index)?.0);
                    row.state = self.prove_current(index, size)?;
                }
            }
        }
        Ok(Executed {
            rows,
            next_page: ran.next_page,
            receipt,
            tree_size: ran.size,
        })
    }
}

/// A stored body, parsed.
fn parse_body(row: DocRow, stored: &[u8]) -> Result<Value> {
    serde_json::from_slice(stored)
        .map_err(|e| Error::internal(format!("journal row {}: the body: {e}", row.index)))
}

fn result_row(statement: usize, row: Row) -> ResultRow {
    ResultRow {
        statement: statement as u32,
        json: row.json,
        index: row.revision,
        proof: None,
        entry: None,
        state: None,
    }
}

/// Why a revision committed from `reads.base` to `size` conflicts with `reads`, if one
/// does.
fn changed_since(snap: &Snapshot, reads: &ReadSet, size: u64) -> Result<Option<String>> {
    if size.saturating_sub(reads.base) > super::reads::MAX_REVISIONS_SINCE {
        return Ok(Some("too many revisions were committed since".into()));
    }
    for row in snap.leaves_in(reads.base, size)? {
        let row = row?;
        let leaf = row.leaf()?;
        let entry = decode_entry(row.index(), leaf.entry)?;
        if let Some(why) = reads.conflict(&entry.table, &entry.id, leaf.body) {
            return Ok(Some(format!(
                "document {} in table {}: {why}",
                Quote(&entry.id),
                Quote(&entry.table)
            )));
        }
    }
    Ok(None)
}

/// A document's (table, id).
type DocId = (String, String);

/// A write of the transaction, over the snapshot's document.
#[derive(Debug, Clone)]
struct Pending {
    /// The document's state in the snapshot (`None`: inserted by this transaction).
    base: Option<DocRow>,
    /// The body now; `None` once deleted.
    body: Option<Value>,
}

/// The statements' view of the ledger: the snapshot, with the transaction's writes over
/// it, and what they read.
struct Engine<'s> {
    snap: &'s Snapshot,
    /// The ledger's index definitions, as of `snap` when first asked.
    cache: &'s DefsCache,
    /// Whether to note every document read (tables scanned and index ranges are noted
    /// always: they are few).
    track: bool,
    size: u64,
    max_examined: u64,
    examined: Cell<u64>,
    reads: RefCell<ReadSet>,
    /// Writes, by (table, id), and the order they were first made in.
    writes: RefCell<(HashMap<DocId, Pending>, Vec<DocId>)>,
    tables: RefCell<HashMap<String, bool>>,
    defs: RefCell<Option<Arc<Vec<IndexDef>>>>,
}

impl<'s> Engine<'s> {
    fn new(
        snap: &'s Snapshot,
        cache: &'s DefsCache,
        size: u64,
        limits: &Limits,
        track: bool,
    ) -> Engine<'s> {
        Engine {
            snap,
            cache,
            track,
            size,
            max_examined: limits.max_examined_documents,
            examined: Cell::new(0),
            reads: RefCell::new(ReadSet {
                base: size,
                ..ReadSet::default()
            }),
            writes: RefCell::new((HashMap::new(), Vec::new())),
            tables: RefCell::new(HashMap::new()),
            defs: RefCell::new(None),
        }
    }

    /// Counts one more document read, refusing past the limit.
    fn examine(&self, table: &str) -> Result<()> {
        let n = self.examined.get() + 1;
        self.examined.set(n);
        if n > self.max_examined {
            return Err(Error::exhausted(format!(
                "the statement read more than {} documents of table {} (the limit, serve \
                 --max-examined-documents); give its WHERE an equality or range on an \
                 indexed path (CREATE INDEX ON {} (path)), or narrow it",
                self.max_examined,
                Quote(table),
                table
            )));
        }
        Ok(())
    }

    fn index_defs(&self) -> Result<Arc<Vec<IndexDef>>> {
        if let Some(d) = self.defs.borrow().as_ref() {
            return Ok(d.clone());
        }
        let defs = self.cache.get(self.snap)?;
        *self.defs.borrow_mut() = Some(defs.clone());
        Ok(defs)
    }

    /// A live document of the snapshot, counted as examined; without `parse`, its body
    /// is left null and only its stored bytes come.
    fn stored(&self, table: &str, id: String, row: DocRow, parse: bool) -> Result<Doc> {
        self.examine(table)?;
        let stored = self.stored_body(row)?;
        let body = if parse {
            parse_body(row, &stored)?
        } else {
            Value::Null
        };
        Ok(Doc {
            body,
            stored: Some(stored),
            id,
            version: row.version,
            index: Some(row.index),
            metadata: None,
        })
    }

    /// The body of the revision `row` names, as stored.
    fn stored_body(&self, row: DocRow) -> Result<Vec<u8>> {
        Ok(self.snap.require_leaf(row.index)?.leaf()?.body.to_vec())
    }

    /// The document as the transaction has it: `Err(())` when it has none of its own
    /// (the snapshot's stands), `Ok(None)` when it deleted it.
    fn pending(&self, table: &str, id: &str) -> std::result::Result<Option<Doc>, ()> {
        let writes = self.writes.borrow();
        if writes.0.is_empty() {
            return Err(());
        }
        let p = writes.0.get(&(table.to_owned(), id.to_owned())).ok_or(())?;
        Ok(p.body.as_ref().map(|b| Doc {
            id: id.to_owned(),
            version: p.base.map_or(0, |b| b.version),
            index: p.base.map(|b| b.index),
            body: b.clone(),
            stored: None,
            metadata: None,
        }))
    }

    /// Documents the transaction inserted or changed in `table`.
    fn own_docs(&self, table: &str) -> Vec<Doc> {
        let writes = self.writes.borrow();
        writes
            .1
            .iter()
            .filter(|(t, _)| t == table)
            .filter_map(|(t, id)| {
                let p = writes.0.get(&(t.clone(), id.clone()))?;
                Some(Doc {
                    id: id.clone(),
                    version: p.base.map_or(0, |b| b.version),
                    index: p.base.map(|b| b.index),
                    body: p.body.clone()?,
                    stored: None,
                    metadata: None,
                })
            })
            .collect()
    }

    fn write(&self, table: &str, doc: &Doc, body: Option<Value>) -> Result<()> {
        let key = (table.to_owned(), doc.id.clone());
        self.reads.borrow_mut().docs.insert(key.clone());
        let mut writes = self.writes.borrow_mut();
        if let Some(p) = writes.0.get_mut(&key) {
            p.body = body;
            return Ok(());
        }
        let base = self.snap.current(table, &doc.id)?.filter(|r| r.live);
        writes.1.push(key.clone());
        writes.0.insert(key, Pending { base, body });
        Ok(())
    }

    /// The transaction's writes as operations, in the order first made (a document
    /// inserted and deleted by it is not written at all).
    fn ops(&self) -> Result<Vec<RequestOp>> {
        let writes = self.writes.borrow();
        let mut ops = Vec::new();
        for key in &writes.1 {
            let Some(p) = writes.0.get(key) else { continue };
            let (table, id) = (key.0.clone(), key.1.clone());
            let json = |b: &Value| canonical(b).map_err(|e| Error::invalid(format!("{e}")));
            ops.push(match (&p.base, &p.body) {
                (None, None) => continue,
                (None, Some(b)) => RequestOp::Insert {
                    table,
                    id: Some(id),
                    json: json(b)?,
                },
                (Some(base), Some(b)) => RequestOp::Update {
                    table,
                    id,
                    json: json(b)?,
                    expected_version: Some(base.version),
                },
                (Some(base), None) => RequestOp::Delete {
                    table,
                    id,
                    expected_version: Some(base.version),
                },
            });
        }
        Ok(ops)
    }

    /// The metadata of the revision at `index`, as history and the committed view show
    /// it.
    fn metadata_at(&self, index: u64) -> Result<Value> {
        let row = self.snap.require_leaf(index)?;
        let entry = decode_entry(index, row.leaf()?.entry)?;
        let mut m = Map::new();
        m.insert("id".into(), Value::String(entry.id));
        m.insert("version".into(), Value::from(entry.version));
        m.insert("txId".into(), Value::from(entry.tx_id));
        m.insert(
            "txTime".into(),
            Value::String(rfc3339(entry.commit_time_micros)),
        );
        m.insert("index".into(), Value::from(index));
        m.insert("principal".into(), Value::String(entry.principal));
        m.insert(
            "operation".into(),
            Value::String(format!("{:?}", entry.operation).to_lowercase()),
        );
        Ok(Value::Object(m))
    }
}

impl Data for Engine<'_> {
    fn table_exists(&self, table: &str) -> Result<bool> {
        if let Some(&known) = self.tables.borrow().get(table) {
            return Ok(known);
        }
        let exists = self.snap.table(table)?.is_some_and(|t| t.active);
        self.tables.borrow_mut().insert(table.to_owned(), exists);
        Ok(exists)
    }

    fn indexes(&self, table: &str) -> Result<Vec<Vec<PathStep>>> {
        Ok(self
            .index_defs()?
            .iter()
            .filter(|d| d.table == table && d.state == DefState::Online)
            .map(|d| d.path.clone())
            .collect())
    }

    fn scan(&self, table: &str, each: &mut dyn FnMut(Doc) -> Result<bool>) -> Result<()> {
        self.reads.borrow_mut().tables.insert(table.to_owned());
        for row in self.snap.current_rows(table, None)? {
            let (id, row) = row?;
            if self.pending(table, &id).is_ok() {
                continue; // the transaction's own version comes below
            }
            if !row.live {
                continue;
            }
            if !each(self.stored(table, id, row, true)?)? {
                return Ok(());
            }
        }
        for doc in self.own_docs(table) {
            if !each(doc)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn lookup(
        &self,
        table: &str,
        path: &[PathStep],
        range: &ValueRange,
        bodies: bool,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()> {
        let defs = self.index_defs()?;
        let Some(def) = defs
            .iter()
            .find(|d| d.table == table && d.path == path && d.state == DefState::Online)
        else {
            return self.scan(table, each);
        };
        self.reads.borrow_mut().ranges.push(RangeRead {
            table: table.to_owned(),
            path: path.to_vec(),
            range: range.clone(),
        });
        for doc in self.snap.index_docs(def.id, range)? {
            let (id, row) = doc?;
            if self.pending(table, &id).is_ok() {
                continue;
            }
            if self.track {
                self.reads
                    .borrow_mut()
                    .docs
                    .insert((table.to_owned(), id.clone()));
            }
            if !each(self.stored(table, id, row, bodies)?)? {
                return Ok(());
            }
        }
        for doc in self.own_docs(table) {
            let inside = value_at(&doc.body, path)
                .and_then(encode_value)
                .is_some_and(|v| range.contains(&v));
            if inside && !each(doc)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn history(
        &self,
        table: &str,
        id: Option<&str>,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()> {
        let mut revisions: Vec<(String, DocRow)> = Vec::new();
        match id {
            Some(id) => {
                self.reads
                    .borrow_mut()
                    .docs
                    .insert((table.to_owned(), id.to_owned()));
                for row in self.snap.revisions(table, id, 0)? {
                    revisions.push((id.to_owned(), row?));
                }
            }
            None => {
                self.reads.borrow_mut().tables.insert(table.to_owned());
                let ids: Vec<String> = self
                    .snap
                    .current_rows(table, None)?
                    .map(|r| r.map(|(id, _)| id))
                    .collect::<crate::storage::Result<_>>()?;
                for id in ids {
                    for row in self.snap.revisions(table, &id, 0)? {
                        revisions.push((id.clone(), row?));
                    }
                }
            }
        }
        revisions.sort_by_key(|(_, r)| r.index);
        for (id, row) in revisions {
            if row.index >= self.size {
                continue;
            }
            self.examine(table)?;
            let body = if row.live {
                parse_body(row, &self.stored_body(row)?)?
            } else {
                Value::Null
            };
            let doc = Doc {
                id,
                version: row.version,
                index: Some(row.index),
                body,
                stored: None,
                metadata: Some(self.metadata_at(row.index)?),
            };
            if !each(doc)? {
                break;
            }
        }
        Ok(())
    }

    fn metadata(&self, table: &str, doc: &Doc) -> Result<Value> {
        if self.pending(table, &doc.id).is_ok() {
            // Written by this transaction: not committed yet.
            let mut m = Map::new();
            m.insert("id".into(), Value::String(doc.id.clone()));
            m.insert("version".into(), Value::from(doc.version));
            return Ok(Value::Object(m));
        }
        match doc.index {
            Some(i) => self.metadata_at(i),
            None => Ok(Value::Null),
        }
    }

    fn insert(&self, table: &str, body: Value) -> Result<String> {
        let id = generate_ids(1)?
            .pop()
            .ok_or_else(|| Error::internal("no id"))?;
        let key = (table.to_owned(), id.clone());
        let mut writes = self.writes.borrow_mut();
        writes.1.push(key.clone());
        writes.0.insert(
            key,
            Pending {
                base: None,
                body: Some(body),
            },
        );
        Ok(id)
    }

    fn update(&self, table: &str, doc: &Doc, body: Value) -> Result<()> {
        self.write(table, doc, Some(body))
    }

    fn delete(&self, table: &str, doc: &Doc) -> Result<()> {
        self.write(table, doc, None)
    }
}
