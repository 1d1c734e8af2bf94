//! Planning and running `SELECT`, `INSERT`, `UPDATE`, `DELETE` and `EXPLAIN` over a
//! ledger's documents, seen through [`Data`] (the engine's snapshot, with the writes of
//! the transaction's earlier statements).
//!
//! A plan reads the sources of `FROM` in the order written, nested: for each row of the
//! first, the rows of the second, and so on. Each table source is read whole (a scan) or,
//! when a condition on it compares an indexed path with a value known at that point (a
//! literal, a parameter, a variable of an earlier source), through the index: equality
//! first, then `IN`, then a range. Every condition is still evaluated on every row an
//! index yields, so results never depend on which plan ran; the differential test checks
//! that.

use std::collections::HashSet;
use std::ops::Bound;

use serde_json::{Map, Value};

use super::ast::{
    BinaryOp, Change, Expr, FromItem, JoinKind, Projection, Select, Source, SourceKind, Statement,
    Target,
};
use super::eval::{self, Env, Truth, Val, eval, total_order, truth};
use crate::error::{Error, Quote, Result};
use crate::model::{PathStep, path_text};
use crate::storage::{ValueRange, encode_value};

/// A document as a source yields it.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its id.
    pub id: String,
    /// The revision's version.
    pub version: u64,
    /// The revision's journal index (for a document written earlier in this transaction,
    /// that of the revision it replaces, if any).
    pub index: Option<u64>,
    /// The body; for a history row of a delete, `null`.
    pub body: Value,
    /// The body's canonical JSON as stored, when the source has it at hand (a table's
    /// documents as the snapshot holds them): a row that is the document as it is goes
    /// out as these bytes, without being written out again.
    pub stored: Option<Vec<u8>>,
    /// For history rows: the revision's metadata.
    pub metadata: Option<Value>,
}

/// What a statement reads and writes through. Methods take `&self`: a plan reads inner
/// sources while it walks outer ones.
pub trait Data {
    /// Whether the table exists.
    fn table_exists(&self, table: &str) -> Result<bool>;
    /// The paths of the table's online indexes.
    fn indexes(&self, table: &str) -> Result<Vec<Vec<PathStep>>>;
    /// The live documents, in id order, until `each` says stop (false).
    fn scan(&self, table: &str, each: &mut dyn FnMut(Doc) -> Result<bool>) -> Result<()>;
    /// The live documents whose value at `path` is in `range`, through its index. Without
    /// `bodies`, a document read from storage may come with its `stored` bytes only
    /// (`body` null): nothing will read it.
    fn lookup(
        &self,
        table: &str,
        path: &[PathStep],
        range: &ValueRange,
        bodies: bool,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()>;
    /// Every revision of the table (of document `id` only, if given), in journal order,
    /// each with its metadata.
    fn history(
        &self,
        table: &str,
        id: Option<&str>,
        each: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()>;
    /// The metadata of a live document's revision (the committed view's `metadata`).
    fn metadata(&self, table: &str, doc: &Doc) -> Result<Value>;
    /// Inserts a document; returns its new id.
    fn insert(&self, table: &str, body: Value) -> Result<String>;
    /// Replaces a live document read by this transaction.
    fn update(&self, table: &str, doc: &Doc, body: Value) -> Result<()>;
    /// Deletes a live document read by this transaction.
    fn delete(&self, table: &str, doc: &Doc) -> Result<()>;
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The value, as canonical JSON.
    pub json: Vec<u8>,
    /// When the row is a stored revision's document as it is (`SELECT *` or `SELECT
    /// VALUE x` of one table, committed view or history source): its journal index.
    pub revision: Option<u64>,
}

impl Row {
    /// A row of `value`.
    fn of(value: &Value, revision: Option<u64>) -> Row {
        Row {
            // A value the language made is always writable (numbers are finite); `null`
            // stands in should that ever not hold.
            json: crate::json::canonical(value).unwrap_or_else(|_| b"null".to_vec()),
            revision,
        }
    }
}

/// How a source is read.
#[derive(Debug, Clone)]
enum Access {
    /// Every document.
    Scan,
    /// Through the index on `path`, by `lookup`, which stands for the `WHERE` conjuncts
    /// at `covers` (their positions among the conjuncts).
    Index {
        path: Vec<PathStep>,
        lookup: Lookup,
        covers: Vec<usize>,
    },
    /// `history()`, whole.
    History,
    /// `history()` of one document: `h.metadata.id = e`.
    DocumentHistory(Expr),
    /// An expression over earlier variables.
    Unnest,
}

/// The values an index access looks up.
#[derive(Debug, Clone)]
enum Lookup {
    Eq(Expr),
    In(Expr),
    Range {
        low: Option<(Expr, bool)>,
        high: Option<(Expr, bool)>,
    },
}

/// One source of a plan.
#[derive(Debug, Clone)]
struct Step {
    source: Source,
    alias: String,
    kind: JoinKind,
    on: Option<Expr>,
    access: Access,
}

/// A `SELECT`'s plan: its sources in order.
#[derive(Debug, Clone)]
struct Plan {
    steps: Vec<Step>,
    /// Whether anything reads the documents' bodies (false only for a lookup whose
    /// index answers the whole `WHERE` and whose rows go out as stored).
    bodies: bool,
}

/// The variable a source binds: its alias, or a table's name, or a path's last field.
fn alias_of(source: &Source, position: usize) -> String {
    if let Some(a) = &source.alias {
        return a.clone();
    }
    match &source.kind {
        SourceKind::Table(t) => t.clone(),
        SourceKind::Committed(t) => format!("_ql_committed_{t}"),
        SourceKind::History { .. } => "history".into(),
        SourceKind::Expr(Expr::Field(_, f)) => f.clone(),
        SourceKind::Expr(_) => format!("_{}", position + 1),
    }
}

/// The conjuncts of a condition joined by AND.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Binary(BinaryOp::And, a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        other => vec![other],
    }
}

/// The names an expression refers to.
fn names(e: &Expr, out: &mut Vec<String>) {
    let mut walk = |e: &Expr| names(e, out);
    match e {
        Expr::Name(n, _) => out.push(n.clone()),
        Expr::Literal(_) | Expr::Missing | Expr::Param(..) => {}
        Expr::Field(b, _) => walk(b),
        Expr::Index(a, b) | Expr::Binary(_, a, b) => {
            names(a, out);
            names(b, out);
        }
        Expr::Struct(fields) => {
            for (k, v) in fields {
                names(k, out);
                names(v, out);
            }
        }
        Expr::List(items) | Expr::Bag(items) => items.iter().for_each(|i| names(i, out)),
        Expr::Unary(_, a) | Expr::Cast { expr: a, .. } | Expr::Is { expr: a, .. } => walk(a),
        Expr::Like {
            expr,
            pattern,
            escape,
            ..
        } => {
            names(expr, out);
            names(pattern, out);
            if let Some(e) = escape {
                names(e, out);
            }
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            names(expr, out);
            names(low, out);
            names(high, out);
        }
        Expr::In { expr, list, .. } => {
            names(expr, out);
            names(list, out);
        }
        Expr::Call { args, .. } => args.iter().for_each(|a| names(a, out)),
        Expr::Case {
            operand,
            arms,
            otherwise,
        } => {
            if let Some(o) = operand {
                names(o, out);
            }
            for (w, t) in arms {
                names(w, out);
                names(t, out);
            }
            if let Some(o) = otherwise {
                names(o, out);
            }
        }
        Expr::Aggregate { arg, .. } => {
            if let Some(a) = arg {
                names(a, out);
            }
        }
    }
}

/// The document path `e` names under variable `var` (`var.a.b[0]`), or, when `bare`
/// (the statement has one document variable), an unqualified one (`a.b`).
fn path_under(e: &Expr, var: &str, bare: bool, bound: &[String]) -> Option<Vec<PathStep>> {
    match e {
        Expr::Name(n, _) if n == var => Some(Vec::new()),
        Expr::Name(n, _) if bare && !bound.contains(n) => Some(vec![PathStep::Field(n.clone())]),
        Expr::Field(b, f) => {
            let mut p = path_under(b, var, bare, bound)?;
            p.push(PathStep::Field(f.clone()));
            Some(p)
        }
        Expr::Index(b, i) => {
            let Expr::Literal(Value::Number(n)) = i.as_ref() else {
                return None;
            };
            let mut p = path_under(b, var, bare, bound)?;
            p.push(PathStep::Index(n.as_u64()?));
            Some(p)
        }
        _ => None,
    }
}

/// The planner's view of a statement's variables while it places conditions.
struct Scope<'a> {
    /// Variables bound before the source being planned.
    bound: &'a [String],
    /// Whether the statement has only one document variable (unqualified names are its).
    bare: bool,
}

impl Scope<'_> {
    /// Whether `e` needs only what is known before the source: no names, or bound ones.
    fn known(&self, e: &Expr) -> bool {
        let mut n = Vec::new();
        names(e, &mut n);
        n.iter().all(|n| self.bound.contains(n))
    }
}

/// The best index access for a source `var` of `table` among `conds`.
fn choose_index(
    conds: &[&Expr],
    var: &str,
    prefix: &[PathStep],
    indexes: &[Vec<PathStep>],
    scope: &Scope<'_>,
) -> Option<(Vec<PathStep>, Lookup, Vec<usize>)> {
    // The indexed path of `e`, relative to the document (under `prefix` for the committed
    // view's `data`).
    let indexed = |e: &Expr| -> Option<Vec<PathStep>> {
        let p = path_under(e, var, scope.bare, scope.bound)?;
        let rest = p.strip_prefix(prefix)?.to_vec();
        indexes.contains(&rest).then_some(rest)
    };
    // The lookup, and the positions in `conds` of the conditions it stands for.
    let mut best: Option<(u8, Vec<PathStep>, Lookup, Vec<usize>)> = None;
    let mut offer = |rank: u8, path: Vec<PathStep>, lookup: Lookup, from: Vec<usize>| {
        if best.as_ref().is_none_or(|(r, _, _, _)| rank < *r) {
            best = Some((rank, path, lookup, from));
        }
    };
    // Range bounds by path: a low bound from one condition and a high one from another
    // (`n >= 1 AND n < 9`) make one range.
    type Bound = Option<(Expr, bool, usize)>;
    let mut bounds: Vec<(Vec<PathStep>, Bound, Bound)> = Vec::new();
    let mut bound = |path: Vec<PathStep>, low: Bound, high: Bound| match bounds
        .iter_mut()
        .find(|(p, _, _)| *p == path)
    {
        Some((_, l, h)) => {
            if l.is_none() {
                *l = low;
            }
            if h.is_none() {
                *h = high;
            }
        }
        None => bounds.push((path, low, high)),
    };
    for (at, c) in conds.iter().enumerate() {
        match c {
            Expr::Binary(op, a, b) => {
                let (path, value, op) = match (indexed(a), indexed(b)) {
                    (Some(p), _) if scope.known(b) => (p, b, *op),
                    (_, Some(p)) if scope.known(a) => (p, a, flip(*op)),
                    _ => continue,
                };
                let v = (**value).clone();
                match op {
                    BinaryOp::Eq => offer(0, path, Lookup::Eq(v), vec![at]),
                    BinaryOp::Lt | BinaryOp::Le => {
                        bound(path, None, Some((v, op == BinaryOp::Le, at)));
                    }
                    BinaryOp::Gt | BinaryOp::Ge => {
                        bound(path, Some((v, op == BinaryOp::Ge, at)), None);
                    }
                    _ => {}
                }
            }
            Expr::In {
                expr,
                list,
                negated: false,
            } => {
                if let Some(p) = indexed(expr)
                    && scope.known(list)
                {
                    offer(1, p, Lookup::In((**list).clone()), vec![at]);
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                if let Some(p) = indexed(expr)
                    && scope.known(low)
                    && scope.known(high)
                {
                    bound(
                        p,
                        Some(((**low).clone(), true, at)),
                        Some(((**high).clone(), true, at)),
                    );
                }
            }
            _ => {}
        }
    }
    // A range bounded on both sides before one open on a side.
    for (path, low, high) in bounds {
        let rank = if low.is_some() && high.is_some() {
            2
        } else {
            3
        };
        let mut from: Vec<usize> = low.iter().chain(&high).map(|b| b.2).collect();
        from.dedup();
        let strip = |b: Bound| b.map(|(e, inclusive, _)| (e, inclusive));
        let lookup = Lookup::Range {
            low: strip(low),
            high: strip(high),
        };
        offer(rank, path, lookup, from);
    }
    best.map(|(_, p, l, from)| (p, l, from))
}

/// `a op b` as `b op' a`.
fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        other => other,
    }
}

/// The sources of `FROM`, in order, with their join kinds and `ON` conditions.
fn flatten(from: &[FromItem]) -> Vec<(Source, JoinKind, Option<Expr>)> {
    let mut out = Vec::new();
    for item in from {
        out.push((item.source.clone(), JoinKind::Cross, None));
        for j in &item.joins {
            out.push((j.source.clone(), j.kind, j.on.clone()));
        }
    }
    out
}

fn plan(select: &Select, data: &dyn Data) -> Result<Plan> {
    let sources = flatten(&select.from);
    let document_vars = sources.len();
    let filter = select.filter.as_ref().map(conjuncts).unwrap_or_default();
    let mut bound: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for (k, (source, kind, on)) in sources.into_iter().enumerate() {
        let alias = alias_of(&source, k);
        let scope = Scope {
            bound: &bound,
            bare: document_vars == 1,
        };
        // WHERE narrows a source unless it is the optional side of a LEFT JOIN.
        let mut conds: Vec<&Expr> = on.as_ref().map(conjuncts).unwrap_or_default();
        let from_on = conds.len();
        if kind != JoinKind::Left {
            conds.extend(filter.iter().copied());
        }
        let access = match &source.kind {
            SourceKind::Table(t) | SourceKind::Committed(t) => {
                require_table(data, t)?;
                let prefix = match &source.kind {
                    SourceKind::Committed(_) => vec![PathStep::Field("data".into())],
                    _ => Vec::new(),
                };
                match choose_index(&conds, &alias, &prefix, &data.indexes(t)?, &scope) {
                    Some((path, lookup, from)) => Access::Index {
                        path,
                        lookup,
                        // Only conditions of the WHERE: an ON condition is not a row filter.
                        covers: from
                            .into_iter()
                            .filter_map(|at| at.checked_sub(from_on))
                            .collect(),
                    },
                    None => Access::Scan,
                }
            }
            SourceKind::History { table, .. } => {
                require_table(data, table)?;
                let id_path = [
                    PathStep::Field("metadata".into()),
                    PathStep::Field("id".into()),
                ];
                let by_id = conds.iter().find_map(|c| match c {
                    Expr::Binary(BinaryOp::Eq, a, b) => {
                        match (
                            path_under(a, &alias, scope.bare, &bound),
                            path_under(b, &alias, scope.bare, &bound),
                        ) {
                            (Some(p), _) if p == id_path && scope.known(b) => Some((**b).clone()),
                            (_, Some(p)) if p == id_path && scope.known(a) => Some((**a).clone()),
                            _ => None,
                        }
                    }
                    _ => None,
                });
                match by_id {
                    Some(e) => Access::DocumentHistory(e),
                    None => Access::History,
                }
            }
            SourceKind::Expr(_) => Access::Unnest,
        };
        bound.push(alias.clone());
        bound.extend(source.by.clone());
        bound.extend(source.at.clone());
        steps.push(Step {
            source,
            alias,
            kind,
            on,
            access,
        });
    }
    Ok(Plan {
        steps,
        bodies: true,
    })
}

fn require_table(data: &dyn Data, table: &str) -> Result<()> {
    if data.table_exists(table)? {
        Ok(())
    } else {
        Err(Error::not_found(format!(
            "table {} does not exist",
            Quote(table)
        )))
    }
}

/// The plan as `EXPLAIN` shows it: a row per source.
fn explain_rows(plan: &Plan) -> Vec<Row> {
    plan.steps
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("source".into(), Value::String(s.alias.clone()));
            let (kind, table) = match &s.source.kind {
                SourceKind::Table(t) => ("table", Some(t)),
                SourceKind::Committed(t) => ("committed view", Some(t)),
                SourceKind::History { table, .. } => ("history", Some(table)),
                SourceKind::Expr(_) => ("expression", None),
            };
            m.insert("reads".into(), Value::String(kind.into()));
            if let Some(t) = table {
                m.insert("table".into(), Value::String(t.clone()));
            }
            let access = match &s.access {
                Access::Scan => "scan".to_owned(),
                Access::Index { path, lookup, .. } => {
                    m.insert("index".into(), Value::String(path_text(path)));
                    match lookup {
                        Lookup::Eq(_) => "index equality",
                        Lookup::In(_) => "index IN",
                        Lookup::Range { .. } => "index range",
                    }
                    .to_owned()
                }
                Access::History => "history scan".into(),
                Access::DocumentHistory(_) => "document history".into(),
                Access::Unnest => "unnest".into(),
            };
            m.insert("access".into(), Value::String(access));
            if s.kind != JoinKind::Cross {
                m.insert(
                    "join".into(),
                    Value::String(
                        if s.kind == JoinKind::Left {
                            "left"
                        } else {
                            "inner"
                        }
                        .into(),
                    ),
                );
            }
            Row::of(&Value::Object(m), None)
        })
        .collect()
}

/// Checks what can be checked of an expression before any row: its function names and
/// argument counts, and its CAST types.
fn check_expr(e: &Expr) -> Result<()> {
    let at = |pos: &super::ast::Pos, m: String| {
        Error::invalid(format!("line {}, column {}: {m}", pos.line, pos.column))
    };
    match e {
        Expr::Call { name, args, pos } => {
            eval::check_call(name, args.len()).map_err(|m| at(pos, m))?;
            args.iter().try_for_each(check_expr)
        }
        Expr::Cast { expr, to, pos } => {
            if !eval::CAST_TYPES.contains(&to.as_str()) {
                return Err(at(
                    pos,
                    format!(
                        "CAST to {to} is not supported (graven casts to {})",
                        eval::CAST_TYPES.join(", ")
                    ),
                ));
            }
            check_expr(expr)
        }
        Expr::Literal(_) | Expr::Missing | Expr::Param(..) | Expr::Name(..) => Ok(()),
        Expr::Field(b, _) | Expr::Unary(_, b) | Expr::Is { expr: b, .. } => check_expr(b),
        Expr::Index(a, b)
        | Expr::Binary(_, a, b)
        | Expr::In {
            expr: a, list: b, ..
        } => {
            check_expr(a)?;
            check_expr(b)
        }
        Expr::Struct(fields) => fields.iter().try_for_each(|(k, v)| {
            check_expr(k)?;
            check_expr(v)
        }),
        Expr::List(items) | Expr::Bag(items) => items.iter().try_for_each(check_expr),
        Expr::Like {
            expr,
            pattern,
            escape,
            ..
        } => {
            check_expr(expr)?;
            check_expr(pattern)?;
            escape.as_deref().map_or(Ok(()), check_expr)
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            check_expr(expr)?;
            check_expr(low)?;
            check_expr(high)
        }
        Expr::Case {
            operand,
            arms,
            otherwise,
        } => {
            operand.as_deref().map_or(Ok(()), check_expr)?;
            arms.iter().try_for_each(|(w, t)| {
                check_expr(w)?;
                check_expr(t)
            })?;
            otherwise.as_deref().map_or(Ok(()), check_expr)
        }
        Expr::Aggregate { arg, .. } => arg.as_deref().map_or(Ok(()), check_expr),
    }
}

/// [`check_expr`] over every expression of a statement.
fn check_statement(statement: &Statement) -> Result<()> {
    let opt = |e: &Option<Expr>| e.as_ref().map_or(Ok(()), check_expr);
    match statement {
        Statement::Select(s) => {
            match &s.projection {
                Projection::Star => {}
                Projection::Value(e) => check_expr(e)?,
                Projection::Items(items) => items.iter().try_for_each(|i| check_expr(&i.expr))?,
            }
            for (source, _, on) in flatten(&s.from) {
                opt(&on)?;
                match &source.kind {
                    SourceKind::Expr(e) => check_expr(e)?,
                    SourceKind::History { start, end, .. } => {
                        opt(start)?;
                        opt(end)?;
                    }
                    _ => {}
                }
            }
            opt(&s.filter)?;
            s.order_by.iter().try_for_each(|o| check_expr(&o.expr))?;
            opt(&s.limit)?;
            opt(&s.offset)
        }
        Statement::Insert { value, .. } => check_expr(value),
        Statement::Update {
            filter, changes, ..
        } => {
            opt(filter)?;
            changes.iter().try_for_each(|c| match c {
                Change::Set { path, value } => {
                    check_expr(path)?;
                    check_expr(value)
                }
                Change::Remove { path } => check_expr(path),
                Change::InsertInto { path, value, at } => {
                    check_expr(path)?;
                    check_expr(value)?;
                    opt(at)
                }
            })
        }
        Statement::Delete { filter, .. } => opt(filter),
        Statement::Explain(inner) => check_statement(inner),
        _ => Ok(()),
    }
}

/// Runs a statement that is not DDL; returns its rows (for DML, `{"documentId": id}`
/// per document written).
pub fn run(statement: &Statement, params: &[Value], data: &dyn Data) -> Result<Vec<Row>> {
    check_statement(statement)?;
    match statement {
        Statement::Select(select) => select_rows(select, params, data),
        Statement::Explain(inner) => match inner.as_ref() {
            Statement::Select(select) => Ok(explain_rows(&plan(select, data)?)),
            Statement::Update { target, filter, .. } | Statement::Delete { target, filter } => {
                Ok(explain_rows(&plan(&target_select(target, filter), data)?))
            }
            _ => Err(Error::invalid(
                "EXPLAIN shows the plans of SELECT, UPDATE and DELETE statements",
            )),
        },
        Statement::Insert { table, value, .. } => {
            require_table(data, table)?;
            let value = eval(value, &Env::new(params))?;
            let docs = match value {
                Some(Value::Object(m)) => vec![Value::Object(m)],
                Some(Value::Array(items)) => items,
                other => {
                    return Err(Error::invalid(format!(
                        "INSERT INTO {}: the value is {}, not a struct or a bag of structs",
                        table,
                        describe(&other)
                    )));
                }
            };
            let mut rows = Vec::with_capacity(docs.len());
            for (i, doc) in docs.into_iter().enumerate() {
                if !doc.is_object() {
                    return Err(Error::invalid(format!(
                        "INSERT INTO {table}: value {i} is {}, not a struct",
                        describe(&Some(doc))
                    )));
                }
                let id = data.insert(table, doc)?;
                rows.push(id_row(&id));
            }
            Ok(rows)
        }
        Statement::Update {
            target,
            filter,
            changes,
        } => {
            let matched = matching(target, filter, params, data)?;
            let var = target.alias.clone().unwrap_or_else(|| target.table.clone());
            let mut rows = Vec::with_capacity(matched.len());
            for (doc, env) in matched {
                let mut body = doc.body.clone();
                for change in changes {
                    apply_change(&mut body, change, &var, &env)?;
                }
                data.update(&target.table, &doc, body)?;
                rows.push(id_row(&doc.id));
            }
            Ok(rows)
        }
        Statement::Delete { target, filter } => {
            let matched = matching(target, filter, params, data)?;
            let mut rows = Vec::with_capacity(matched.len());
            for (doc, _) in matched {
                data.delete(&target.table, &doc)?;
                rows.push(id_row(&doc.id));
            }
            Ok(rows)
        }
        Statement::CreateTable { .. }
        | Statement::DropTable { .. }
        | Statement::CreateIndex { .. }
        | Statement::DropIndex { .. } => Err(Error::internal(
            "DDL is run by the engine, not the executor",
        )),
    }
}

fn id_row(id: &str) -> Row {
    let mut m = Map::new();
    m.insert("documentId".into(), Value::String(id.to_owned()));
    Row::of(&Value::Object(m), None)
}

fn describe(v: &Val) -> String {
    match v {
        None => "MISSING".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(_)) => "a boolean".into(),
        Some(Value::Number(_)) => "a number".into(),
        Some(Value::String(_)) => "a string".into(),
        Some(Value::Array(_)) => "a list".into(),
        Some(Value::Object(_)) => "a struct".into(),
    }
}

/// A DML statement's target as a one-source `SELECT`.
fn target_select(target: &Target, filter: &Option<Expr>) -> Select {
    Select {
        projection: Projection::Star,
        distinct: false,
        from: vec![FromItem {
            source: Source {
                kind: SourceKind::Table(target.table.clone()),
                alias: target.alias.clone(),
                at: None,
                by: target.by.clone(),
                pos: target.pos,
            },
            joins: Vec::new(),
        }],
        filter: filter.clone(),
        order_by: Vec::new(),
        limit: None,
        offset: None,
        pos: target.pos,
    }
}

/// The documents a DML statement's `WHERE` matches, each with its row's variables.
fn matching<'p>(
    target: &Target,
    filter: &Option<Expr>,
    params: &'p [Value],
    data: &dyn Data,
) -> Result<Vec<(Doc, Env<'p>)>> {
    let select = target_select(target, filter);
    let plan = plan(&select, data)?;
    let mut out = Vec::new();
    let mut docs: Vec<Option<Doc>> = vec![None];
    walk(
        &plan,
        0,
        &mut Env::new(params),
        &mut docs,
        data,
        &mut |env, docs| {
            if passes(&select.filter, env)? {
                // The one source's document, its body the variable's value.
                if let Some(Some(d)) = docs.first() {
                    let mut d = d.clone();
                    d.body = env
                        .lookup_ref(&plan.steps[0].alias)
                        .cloned()
                        .unwrap_or_default();
                    out.push((d, env.clone()));
                }
            }
            Ok(true)
        },
    )?;
    Ok(out)
}

fn passes(filter: &Option<Expr>, env: &Env<'_>) -> Result<bool> {
    Ok(match filter {
        None => true,
        Some(f) => truth(&eval(f, env)?) == Truth::True,
    })
}

/// Whether a row passes every one of `conds` (a `WHERE`'s conjuncts), as their AND
/// would: false at the first that is false, without evaluating the rest; true only if
/// each is true.
fn passes_all(conds: &[&Expr], env: &Env<'_>) -> Result<bool> {
    let mut all = true;
    for c in conds {
        match truth(&eval(c, env)?) {
            Truth::False => return Ok(false),
            Truth::True => {}
            _ => all = false,
        }
    }
    Ok(all)
}

/// Whether the documents `lookup` reads are exactly those for which the conditions it
/// stands for are true, so that they need not be evaluated again: the values looked up
/// are null, booleans, numbers or strings, whose encodings are equal and ordered exactly
/// when `=` and the comparisons say so (lists and structs compare element by element,
/// numbers as doubles, which their canonical JSON does not). A range of other values
/// reads the whole table, and every condition is evaluated.
fn exact(lookup: &Lookup, env: &Env<'_>) -> Result<bool> {
    let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    Ok(match lookup {
        Lookup::Eq(e) => eval(e, env)?.as_ref().is_none_or(scalar),
        Lookup::In(e) => match eval(e, env)? {
            Some(Value::Array(items)) => items.iter().all(scalar),
            _ => true,
        },
        Lookup::Range { .. } => ranges(lookup, env)?.is_some(),
    })
}

/// What receives each complete row of a plan: its variables and each source's document;
/// false stops the plan.
type RowSink<'a, 'p> = dyn FnMut(&Env<'p>, &[Option<Doc>]) -> Result<bool> + 'a;

/// Binds the rows of source `k` and those after it, calling `out` with each complete row
/// (every source bound); stops when `out` returns false. `docs[k]` is the document
/// source `k` bound, for provenance.
fn walk<'p>(
    plan: &Plan,
    k: usize,
    env: &mut Env<'p>,
    docs: &mut Vec<Option<Doc>>,
    data: &dyn Data,
    out: &mut RowSink<'_, 'p>,
) -> Result<bool> {
    let Some(step) = plan.steps.get(k) else {
        return out(env, docs);
    };
    if docs.len() <= k {
        docs.resize(k + 1, None);
    }
    let mut go_on = true;
    let mut matched = false;
    let mut visit = |doc: Option<Doc>,
                     value: Value,
                     at: Option<u64>,
                     env: &mut Env<'p>,
                     docs: &mut Vec<Option<Doc>>|
     -> Result<bool> {
        env.bind(&step.alias, value, true);
        let mut bound = 1;
        if let (Some(by), Some(d)) = (&step.source.by, &doc) {
            env.bind(by, Value::String(d.id.clone()), false);
            bound += 1;
        }
        if let (Some(at_var), Some(i)) = (&step.source.at, at) {
            env.bind(at_var, Value::from(i), false);
            bound += 1;
        }
        docs[k] = doc;
        let result = (|| {
            if let Some(on) = &step.on
                && truth(&eval(on, env)?) != Truth::True
            {
                return Ok(true);
            }
            matched = true;
            walk(plan, k + 1, env, docs, data, out)
        })();
        env.unbind(bound);
        docs[k] = None;
        let more = result?;
        go_on = more;
        Ok(more)
    };
    match (&step.source.kind, &step.access) {
        (SourceKind::Expr(e), _) => match eval(e, env)? {
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if !visit(None, item, Some(i as u64), env, docs)? {
                        break;
                    }
                }
            }
            None => {}
            Some(v) => {
                visit(None, v, None, env, docs)?;
            }
        },
        (SourceKind::History { table, start, end }, access) => {
            let bounds = (
                start.as_ref().map(|e| eval(e, env)).transpose()?.flatten(),
                end.as_ref().map(|e| eval(e, env)).transpose()?.flatten(),
            );
            let id = match access {
                Access::DocumentHistory(e) => match eval(e, env)? {
                    Some(Value::String(s)) => Some(s),
                    // No document has an id that is not a string.
                    _ => return Ok(true),
                },
                _ => None,
            };
            let mut rows = Vec::new();
            data.history(table, id.as_deref(), &mut |doc| {
                let meta = doc.metadata.clone().unwrap_or(Value::Null);
                if in_time(&meta, &bounds) {
                    rows.push(doc);
                }
                Ok(true)
            })?;
            for doc in rows {
                let mut m = Map::new();
                if !doc.body.is_null() {
                    m.insert("data".into(), doc.body.clone());
                }
                m.insert(
                    "metadata".into(),
                    doc.metadata.clone().unwrap_or(Value::Null),
                );
                if !visit(Some(doc), Value::Object(m), None, env, docs)? {
                    break;
                }
            }
        }
        (SourceKind::Table(table) | SourceKind::Committed(table), access) => {
            let committed = matches!(step.source.kind, SourceKind::Committed(_));
            // Documents are read first, then bound: inner sources read while this one's
            // documents are in hand, never while a storage iterator is open.
            let mut found: Vec<Doc> = Vec::new();
            let mut keep = |d: Doc| {
                found.push(d);
                Ok(true)
            };
            match access {
                Access::Index { path, lookup, .. } => match ranges(lookup, env)? {
                    Some(ranges) => {
                        // Ranges of an IN list may overlap: a document is bound once.
                        let several = ranges.len() > 1;
                        let mut seen = HashSet::new();
                        for r in ranges {
                            data.lookup(table, path, &r, plan.bodies, &mut |d| {
                                if !several || seen.insert(d.id.clone()) {
                                    keep(d)?;
                                }
                                Ok(true)
                            })?;
                        }
                    }
                    None => data.scan(table, &mut keep)?,
                },
                _ => data.scan(table, &mut keep)?,
            }
            for mut doc in found {
                // The body moves into the variable: the document kept for provenance
                // needs only its id, version and index.
                let body = std::mem::take(&mut doc.body);
                let value = if committed {
                    let mut m = Map::new();
                    m.insert("metadata".into(), data.metadata(table, &doc)?);
                    m.insert("data".into(), body);
                    Value::Object(m)
                } else {
                    body
                };
                if !visit(Some(doc), value, None, env, docs)? {
                    break;
                }
            }
        }
    }
    // A LEFT JOIN keeps the row of the sources before with this one null.
    if !matched && step.kind == JoinKind::Left && go_on {
        env.bind(&step.alias, Value::Null, true);
        let more = walk(plan, k + 1, env, docs, data, out);
        env.unbind(1);
        return more;
    }
    Ok(go_on)
}

/// Whether a history row's commit time is within `bounds` (RFC 3339 strings compare as
/// times when they share graven's form; numbers are microseconds).
fn in_time(meta: &Value, bounds: &(Val, Val)) -> bool {
    let Some(t) = meta.get("txTime").and_then(Value::as_str) else {
        return true;
    };
    let norm = |b: &Value| -> Option<String> {
        match b {
            Value::String(s) => Some(normalize_time(s)),
            Value::Number(n) => Some(eval::rfc3339(n.as_u64()?)),
            _ => None,
        }
    };
    let ok_low = bounds
        .0
        .as_ref()
        .and_then(norm)
        .is_none_or(|lo| t >= lo.as_str());
    let ok_high = bounds
        .1
        .as_ref()
        .and_then(norm)
        .is_none_or(|hi| t <= hi.as_str());
    ok_low && ok_high
}

/// A timestamp as graven writes them (`2019-06-05T00:00:00.000000Z`) from the shorter
/// forms people write (`2019-06-05T00:00:00Z`, `2019-06-05T`, `2019-06-05`).
fn normalize_time(s: &str) -> String {
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let mut field = || parts.next().filter(|p| !p.is_empty()).unwrap_or("00");
    let (h, m, sec) = (field().to_owned(), field().to_owned(), field().to_owned());
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    format!("{date}T{h:0>2}:{m:0>2}:{sec:0>2}.{frac}Z")
}

/// The encoded value ranges an index lookup reads now; `None` when its bound is a value
/// the index cannot look up (the source is then scanned).
fn ranges(lookup: &Lookup, env: &Env<'_>) -> Result<Option<Vec<ValueRange>>> {
    Ok(match lookup {
        Lookup::Eq(e) => match eval(e, env)? {
            // `= null` and `= MISSING` are never true: nothing to read.
            None | Some(Value::Null) => Some(Vec::new()),
            Some(v) => encode_value(&v).map(|k| vec![ValueRange::exactly(k)]),
        },
        Lookup::In(e) => match eval(e, env)? {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(encode_value)
                    .map(ValueRange::exactly)
                    .collect(),
            ),
            _ => Some(Vec::new()),
        },
        Lookup::Range { low, high } => {
            let bound = |b: &Option<(Expr, bool)>| -> Result<Option<(Val, bool)>> {
                b.as_ref()
                    .map(|(e, inclusive)| Ok((eval(e, env)?, *inclusive)))
                    .transpose()
            };
            let (low, high) = (bound(low)?, bound(high)?);
            // Only numbers and strings: their encodings sort as they compare.
            let key = |v: &Val| match v {
                Some(v @ (Value::Number(_) | Value::String(_))) => encode_value(v),
                _ => None,
            };
            let mut tag: Option<u8> = None;
            let mut range = ValueRange {
                start: Bound::Unbounded,
                end: Bound::Unbounded,
            };
            for (b, is_low) in [(&low, true), (&high, false)] {
                let Some((v, inclusive)) = b else { continue };
                if v.as_ref().is_none_or(Value::is_null) {
                    // A comparison with null or MISSING is never true.
                    return Ok(Some(Vec::new()));
                }
                let Some(k) = key(v) else { return Ok(None) };
                if tag.is_some_and(|t| Some(&t) != k.first()) {
                    // `BETWEEN 1 AND 'z'`: no value is of both types.
                    return Ok(Some(Vec::new()));
                }
                tag = k.first().copied();
                let bound = if *inclusive {
                    Bound::Included(k)
                } else {
                    Bound::Excluded(k)
                };
                if is_low {
                    range.start = bound;
                } else {
                    range.end = bound;
                }
            }
            // The other end stays within the type.
            let Some(t) = tag else { return Ok(None) };
            let whole = ValueRange::whole_type(&[t]);
            if matches!(range.start, Bound::Unbounded) {
                range.start = whole.start;
            }
            if matches!(range.end, Bound::Unbounded) {
                range.end = whole.end;
            }
            Some(vec![range])
        }
    })
}

/// A select item's column name.
fn column_name(item: &super::ast::SelectItem, i: usize) -> String {
    if let Some(a) = &item.alias {
        return a.clone();
    }
    match &item.expr {
        Expr::Name(n, _) => n.clone(),
        Expr::Field(_, f) => f.clone(),
        _ => format!("_{}", i + 1),
    }
}

fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Aggregate { .. } => true,
        Expr::Field(b, _) | Expr::Unary(_, b) | Expr::Cast { expr: b, .. } => has_aggregate(b),
        Expr::Binary(_, a, b) | Expr::Index(a, b) => has_aggregate(a) || has_aggregate(b),
        Expr::Call { args, .. } | Expr::List(args) | Expr::Bag(args) => {
            args.iter().any(has_aggregate)
        }
        Expr::Struct(fields) => fields
            .iter()
            .any(|(k, v)| has_aggregate(k) || has_aggregate(v)),
        _ => false,
    }
}

/// Replaces each aggregate of `e` by its value over `rows` (the environments of the rows).
fn fold_aggregates(e: &Expr, rows: &[Env<'_>]) -> Result<Expr> {
    Ok(match e {
        Expr::Aggregate {
            func,
            arg,
            distinct,
            ..
        } => {
            let mut values = Vec::new();
            if let Some(arg) = arg {
                for env in rows {
                    if let Some(v) = eval(arg, env)? {
                        values.push(v);
                    }
                }
            }
            if *distinct {
                let mut seen = HashSet::new();
                values.retain(|v| seen.insert(crate::json::canonical(v).unwrap_or_default()));
            }
            Expr::Literal(
                eval::aggregate(*func, values, rows.len(), arg.is_none()).unwrap_or(Value::Null),
            )
        }
        Expr::Field(b, f) => Expr::Field(Box::new(fold_aggregates(b, rows)?), f.clone()),
        Expr::Unary(op, b) => Expr::Unary(*op, Box::new(fold_aggregates(b, rows)?)),
        Expr::Binary(op, a, b) => Expr::Binary(
            *op,
            Box::new(fold_aggregates(a, rows)?),
            Box::new(fold_aggregates(b, rows)?),
        ),
        Expr::Cast { expr, to, pos } => Expr::Cast {
            expr: Box::new(fold_aggregates(expr, rows)?),
            to: to.clone(),
            pos: *pos,
        },
        Expr::Call { name, args, pos } => Expr::Call {
            name: name.clone(),
            args: args
                .iter()
                .map(|a| fold_aggregates(a, rows))
                .collect::<Result<_>>()?,
            pos: *pos,
        },
        other => other.clone(),
    })
}

/// Most rows a `SELECT` with aggregates, `ORDER BY` or `DISTINCT` holds in memory before
/// it answers (the examined-documents limit usually stops it first).
const MAX_HELD_ROWS: usize = 1_000_000;

fn select_rows(select: &Select, params: &[Value], data: &dyn Data) -> Result<Vec<Row>> {
    let mut plan = plan(select, data)?;
    let constant = |e: &Option<Expr>, what: &str| -> Result<Option<usize>> {
        let Some(e) = e else { return Ok(None) };
        match eval(e, &Env::new(params))? {
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                Ok(n.as_u64().map(|n| n.min(usize::MAX as u64) as usize))
            }
            other => Err(Error::invalid(format!(
                "{what} must be a whole number of 0 or more, not {}",
                describe(&other)
            ))),
        }
    };
    let limit = constant(&select.limit, "LIMIT")?;
    let offset = constant(&select.offset, "OFFSET")?.unwrap_or(0);
    let aggregates = match &select.projection {
        Projection::Value(e) => has_aggregate(e),
        Projection::Items(items) => items.iter().any(|i| has_aggregate(&i.expr)),
        Projection::Star => false,
    };
    let streaming = !aggregates && select.order_by.is_empty() && !select.distinct;
    // Whether each row is the one source's document as it is (`SELECT *`, `SELECT VALUE
    // x`): it then names its revision and, from a table, goes out as stored.
    let whole_document = plan.steps.len() == 1
        && match &select.projection {
            Projection::Star => true,
            Projection::Value(Expr::Name(n, _)) => *n == plan.steps[0].alias,
            Projection::Items(_) | Projection::Value(_) => false,
        };
    let from_table = plan
        .steps
        .first()
        .is_some_and(|s| matches!(s.source.kind, SourceKind::Table(_)));
    // The WHERE conjuncts each row must pass: all of them, less those that an index
    // lookup of the one source answers exactly.
    let covered = match plan.steps.as_slice() {
        [
            Step {
                access: Access::Index { lookup, covers, .. },
                ..
            },
        ] if exact(lookup, &Env::new(params))? => covers.clone(),
        _ => Vec::new(),
    };
    let residual: Vec<&Expr> = select
        .filter
        .as_ref()
        .map(conjuncts)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter(|(at, _)| !covered.contains(at))
        .map(|(_, c)| c)
        .collect();
    // Rows that are a table's stored documents, with nothing left to evaluate on them,
    // need no body parsed: they go out as the stored bytes.
    plan.bodies = !(residual.is_empty()
        && !covered.is_empty()
        && select.order_by.is_empty()
        && !aggregates
        && whole_document
        && from_table);
    let mut rows: Vec<(Vec<Val>, Row)> = Vec::new();
    let mut envs: Vec<Env<'_>> = Vec::new();
    let mut docs = Vec::new();
    let mut root = Env::new(params);
    let mut passed = 0usize;
    walk(&plan, 0, &mut root, &mut docs, data, &mut |env, docs| {
        if !passes_all(&residual, env)? {
            return Ok(true);
        }
        passed += 1;
        if aggregates {
            envs.push(env.clone());
            return Ok(envs.len() < MAX_HELD_ROWS);
        }
        if streaming && passed <= offset {
            return Ok(true);
        }
        let whole = docs
            .first()
            .and_then(Option::as_ref)
            .filter(|_| whole_document);
        let revision = whole.and_then(|d| d.index);
        let stored = whole.filter(|_| from_table).and_then(|d| d.stored.clone());
        let row = match stored {
            Some(json) => Some(Row { json, revision }),
            None => project(&select.projection, env)?.map(|v| Row::of(&v, revision)),
        };
        if let Some(row) = row {
            let keys = select
                .order_by
                .iter()
                .map(|o| eval(&o.expr, env))
                .collect::<Result<Vec<_>>>()?;
            rows.push((keys, row));
        }
        if streaming {
            return Ok(limit.is_none_or(|l| rows.len() < l));
        }
        Ok(rows.len() < MAX_HELD_ROWS)
    })?;
    if aggregates {
        let projection = match &select.projection {
            Projection::Value(e) => Projection::Value(fold_aggregates(e, &envs)?),
            Projection::Items(items) => Projection::Items(
                items
                    .iter()
                    .enumerate()
                    .map(|(n, i)| {
                        Ok(super::ast::SelectItem {
                            expr: fold_aggregates(&i.expr, &envs)?,
                            // The name the item had before its aggregate was folded.
                            alias: Some(column_name(i, n)),
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            Projection::Star => Projection::Star,
        };
        let value = project(&projection, &Env::new(params))?;
        return Ok(value.map(|v| Row::of(&v, None)).into_iter().collect());
    }
    if !select.order_by.is_empty() {
        rows.sort_by(|(a, _), (b, _)| {
            for (o, (x, y)) in select.order_by.iter().zip(a.iter().zip(b)) {
                let nulls_first = o.nulls_first.unwrap_or(!o.descending);
                let absent = |v: &Val| v.as_ref().is_none_or(Value::is_null);
                let ord = match (absent(x), absent(y)) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) if nulls_first => std::cmp::Ordering::Less,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) if nulls_first => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    (false, false) => {
                        let o2 = total_order(x, y);
                        if o.descending { o2.reverse() } else { o2 }
                    }
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let mut out: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    if select.distinct {
        let mut seen = HashSet::new();
        out.retain(|r| seen.insert(r.json.clone()));
    }
    if !streaming {
        out = out
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
    }
    Ok(out)
}

/// A row's value under the projection; `None` when it is MISSING (`SELECT VALUE` of a
/// missing path), which leaves the row out.
fn project(projection: &Projection, env: &Env<'_>) -> Result<Option<Value>> {
    Ok(match projection {
        Projection::Value(e) => eval(e, env)?,
        Projection::Items(items) => {
            let mut m = Map::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(v) = eval(&item.expr, env)? {
                    m.insert(column_name(item, i), v);
                }
            }
            Some(Value::Object(m))
        }
        Projection::Star => {
            let docs: Vec<&Value> = env
                .documents
                .iter()
                .filter_map(|&i| env.vars.get(i).map(|v| &v.1))
                .collect();
            match docs.as_slice() {
                [only] => Some((*only).clone()),
                many => {
                    let mut m = Map::new();
                    for (i, d) in many.iter().enumerate() {
                        match d {
                            Value::Object(fields) => {
                                m.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())))
                            }
                            other => {
                                m.insert(format!("_{}", i + 1), (*other).clone());
                            }
                        }
                    }
                    Some(Value::Object(m))
                }
            }
        }
    })
}

/// A path of an update, as steps from the document.
enum Place {
    Field(String),
    Index(usize),
}

/// The steps of `path` from the document that `var` names (a path that does not start
/// with `var` is a field of the document).
fn place(path: &Expr, var: &str, env: &Env<'_>) -> Result<Vec<Place>> {
    let bad = || {
        Error::invalid(format!(
            "an update path must be {var}.field, {var}.field[n], ... or a field of the document"
        ))
    };
    Ok(match path {
        Expr::Name(n, _) if n == var => Vec::new(),
        Expr::Name(n, _) => vec![Place::Field(n.clone())],
        Expr::Field(b, f) => {
            let mut p = place(b, var, env)?;
            p.push(Place::Field(f.clone()));
            p
        }
        Expr::Index(b, i) => {
            let mut p = place(b, var, env)?;
            match eval(i, env)? {
                Some(Value::Number(n)) if n.as_u64().is_some() => {
                    p.push(Place::Index(n.as_u64().unwrap_or_default() as usize))
                }
                Some(Value::String(s)) => p.push(Place::Field(s)),
                _ => return Err(bad()),
            }
            p
        }
        _ => return Err(bad()),
    })
}

fn place_text(p: &[Place]) -> String {
    let mut s = String::new();
    for step in p {
        match step {
            Place::Field(f) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(f);
            }
            Place::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Applies one change of an update to `doc`.
fn apply_change(doc: &mut Value, change: &Change, var: &str, env: &Env<'_>) -> Result<()> {
    let (path, what) = match change {
        Change::Set { path, .. } => (path, "SET"),
        Change::Remove { path } => (path, "REMOVE"),
        Change::InsertInto { path, .. } => (path, "INSERT INTO"),
    };
    let steps = place(path, var, env)?;
    let text = place_text(&steps);
    let Some((last, parents)) = steps.split_last() else {
        if let Change::Set { value, .. } = change {
            return match eval(value, env)? {
                Some(v @ Value::Object(_)) => {
                    *doc = v;
                    Ok(())
                }
                _ => Err(Error::invalid(format!(
                    "{what} {var}: a document must stay a struct"
                ))),
            };
        }
        return Err(Error::invalid(format!(
            "{what} {var}: name a path inside the document"
        )));
    };
    // The container of the last step, made (as structs) where fields are missing.
    let mut at: &mut Value = doc;
    for step in parents {
        at = match (step, at) {
            (Place::Field(f), Value::Object(m)) => m
                .entry(f.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            (Place::Index(i), Value::Array(items)) if *i < items.len() => &mut items[*i],
            _ => {
                return Err(Error::invalid(format!(
                    "{what} {text}: the path goes through a value that is not a struct or \
                     list, or past a list's end"
                )));
            }
        };
    }
    match change {
        Change::Set { value, .. } => {
            let v = eval(value, env)?;
            match (last, at, v) {
                (Place::Field(f), Value::Object(m), None) => {
                    m.remove(f);
                }
                (Place::Field(f), Value::Object(m), Some(v)) => {
                    m.insert(f.clone(), v);
                }
                (Place::Index(i), Value::Array(items), Some(v)) if *i < items.len() => {
                    items[*i] = v;
                }
                (Place::Index(i), Value::Array(items), None) if *i < items.len() => {
                    items.remove(*i);
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "SET {text}: no such place in the document"
                    )));
                }
            }
        }
        Change::Remove { .. } => match (last, at) {
            (Place::Field(f), Value::Object(m)) => {
                m.remove(f);
            }
            (Place::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
            }
            _ => {}
        },
        Change::InsertInto {
            value, at: name, ..
        } => {
            let v = eval(value, env)?.ok_or_else(|| {
                Error::invalid(format!("INSERT INTO {text}: the value is MISSING"))
            })?;
            let name = match name {
                None => None,
                Some(e) => match eval(e, env)? {
                    Some(Value::String(s)) => Some(s),
                    _ => {
                        return Err(Error::invalid(format!(
                            "INSERT INTO {text} ... AT: the position must be a field name"
                        )));
                    }
                },
            };
            let target = match (last, at) {
                (Place::Field(f), Value::Object(m)) => m.entry(f.clone()).or_insert(Value::Null),
                (Place::Index(i), Value::Array(items)) if *i < items.len() => &mut items[*i],
                _ => {
                    return Err(Error::invalid(format!(
                        "INSERT INTO {text}: no such place in the document"
                    )));
                }
            };
            match (target, name) {
                (Value::Array(items), None) => items.push(v),
                (Value::Object(m), Some(n)) => {
                    if m.contains_key(&n) {
                        return Err(Error::invalid(format!(
                            "INSERT INTO {text}: field {n} is there already; use SET"
                        )));
                    }
                    m.insert(n, v);
                }
                (t @ Value::Null, None) => *t = Value::Array(vec![v]),
                (t @ Value::Null, Some(n)) => {
                    let mut m = Map::new();
                    m.insert(n, v);
                    *t = Value::Object(m);
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "INSERT INTO {text}: it is not a list (or, with AT, a struct)"
                    )));
                }
            }
        }
    }
    Ok(())
}
