//! The statements graven runs, as the parser (`parser.rs`) builds them: the subset of
//! PartiQL that Amazon QLDB accepted, plus `ORDER BY`, `LIMIT`, `OFFSET` and `EXPLAIN`.
//! docs/QUERY.md lists the language.
//!
//! Names are case-sensitive, as in QLDB (tables, aliases, fields); keywords are not.
//! Literals are JSON values. `?` parameters are numbered from 0 in the order they appear
//! in the statement.

use serde_json::Value;

/// Where a token or construct starts in the statement text: 1-based line and column (in
/// characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, counted in characters.
    pub column: u32,
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT ...`.
    Select(Box<Select>),
    /// `INSERT INTO t VALUE expr` (one document) or `INSERT INTO t << expr, ... >>` / a bag
    /// parameter (several).
    Insert {
        /// The table.
        table: String,
        /// The value: a struct, a bag or list of structs, or a parameter holding either.
        value: Expr,
        /// Where `INSERT` starts.
        pos: Pos,
    },
    /// `UPDATE t [AS x] [BY id] SET ... | REMOVE ... [WHERE ...]`, and QLDB's
    /// `FROM t [AS x] [BY id] [WHERE ...] SET ... | REMOVE ... | INSERT INTO path VALUE e`.
    Update {
        /// The table and its variables.
        target: Target,
        /// The filter, if any.
        filter: Option<Expr>,
        /// The changes, applied in order to each matched document.
        changes: Vec<Change>,
    },
    /// `DELETE FROM t [AS x] [BY id] [WHERE ...]`.
    Delete {
        /// The table and its variables.
        target: Target,
        /// The filter, if any.
        filter: Option<Expr>,
    },
    /// `CREATE TABLE t`.
    CreateTable {
        /// The table.
        table: String,
    },
    /// `DROP TABLE t`.
    DropTable {
        /// The table.
        table: String,
    },
    /// `CREATE INDEX ON t (path)`.
    CreateIndex {
        /// The table.
        table: String,
        /// The indexed path, relative to the document (`a.b[0].c` is `[a, b, 0, c]`).
        path: Vec<PathStep>,
    },
    /// `DROP INDEX ON t (path)`, or QLDB's `DROP INDEX "name" ON t [WITH (purge = true)]`
    /// where the name is the path as `graven table describe` prints it.
    DropIndex {
        /// The table.
        table: String,
        /// The path, or the name to find it by.
        index: IndexRef,
    },
    /// `EXPLAIN statement`: the plan instead of the result.
    Explain(Box<Statement>),
}

/// A path step of an index definition: `.name` (or the first name), or `[n]`.
pub use crate::model::PathStep;

/// How `DROP INDEX` names the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexRef {
    /// `ON t (path)`.
    Path(Vec<PathStep>),
    /// `"name" ON t`.
    Name(String),
}

/// The table a DML statement writes, with its variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The table.
    pub table: String,
    /// `AS x` (or `t x`); without one, the table's name is the variable.
    pub alias: Option<String>,
    /// `BY id`: a variable bound to the document id.
    pub by: Option<String>,
    /// Where the statement starts.
    pub pos: Pos,
}

/// One change of an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `SET path = expr`.
    Set {
        /// The path written: starts with the target's variable (or, without one, a field
        /// of the document).
        path: Expr,
        /// The new value.
        value: Expr,
    },
    /// `REMOVE path`.
    Remove {
        /// The path removed.
        path: Expr,
    },
    /// `INSERT INTO path VALUE expr` (appends to a list; `path` must name one, or a
    /// missing field that becomes one) or `INSERT INTO path VALUE expr AT 'name'`
    /// (adds a field to a struct).
    InsertInto {
        /// The list or struct.
        path: Expr,
        /// The value added.
        value: Expr,
        /// The field name, for a struct.
        at: Option<Expr>,
    },
}

/// A `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// What each row is.
    pub projection: Projection,
    /// `DISTINCT`.
    pub distinct: bool,
    /// The `FROM` items, comma-separated (a cross product, or unnesting when an item is a
    /// path of an earlier variable), each with the joins that follow it.
    pub from: Vec<FromItem>,
    /// `WHERE`.
    pub filter: Option<Expr>,
    /// `ORDER BY`, in order.
    pub order_by: Vec<OrderBy>,
    /// `LIMIT`.
    pub limit: Option<Expr>,
    /// `OFFSET`.
    pub offset: Option<Expr>,
    /// Where `SELECT` starts.
    pub pos: Pos,
}

/// What a `SELECT` returns per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `SELECT *`: with one `FROM` variable, its value; with several, their values merged
    /// (as QLDB does for joins).
    Star,
    /// `SELECT VALUE expr`: the value itself, not a struct.
    Value(Expr),
    /// `SELECT e [AS name], ...`: a struct per row. An item without a name is named by its
    /// path's last field (`v.VIN` -> `VIN`), or `_1`, `_2`, ... by position otherwise.
    /// `x.*` is not supported.
    Items(Vec<SelectItem>),
}

/// One item of a `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    /// The value.
    pub expr: Expr,
    /// `AS name`, if given.
    pub alias: Option<String>,
}

/// One `FROM` item and the joins after it.
#[derive(Debug, Clone, PartialEq)]
pub struct FromItem {
    /// The first source.
    pub source: Source,
    /// `[INNER | LEFT [OUTER] | CROSS] JOIN source [ON expr]`, in order.
    pub joins: Vec<Join>,
}

/// A join.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// Which kind.
    pub kind: JoinKind,
    /// What is joined.
    pub source: Source,
    /// `ON expr`; `None` for `CROSS JOIN` (and for `INNER JOIN` without `ON`, which is a
    /// cross product).
    pub on: Option<Expr>,
}

/// A join's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `[INNER] JOIN`.
    Inner,
    /// `LEFT [OUTER] JOIN`.
    Left,
    /// `CROSS JOIN`.
    Cross,
}

/// A source of rows with its variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Where the rows come from.
    pub kind: SourceKind,
    /// `[AS] x`; without one, a table's name, or for a path its last field.
    pub alias: Option<String>,
    /// `AT i`: a variable bound to the position in an array being unnested.
    pub at: Option<String>,
    /// `BY id`: a variable bound to the document id (tables and the committed view).
    pub by: Option<String>,
    /// Where the source starts.
    pub pos: Pos,
}

/// What a source reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A user table: its live documents (QLDB's user view).
    Table(String),
    /// `_ql_committed_t`: the live documents of `t` as `{data, metadata}`.
    Committed(String),
    /// `history(t [, start [, end]])`: every revision of `t`, as `{data, metadata}`;
    /// `start` and `end` bound the commit time (inclusive).
    History {
        /// The table.
        table: String,
        /// Earliest commit time.
        start: Option<Expr>,
        /// Latest commit time.
        end: Option<Expr>,
    },
    /// An expression over earlier variables (`x.items`): its elements if it is a list or
    /// bag, the value itself otherwise (QLDB's unnesting).
    Expr(Expr),
}

/// One `ORDER BY` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// The key.
    pub expr: Expr,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` / `NULLS LAST`; `None`: nulls (and missing) first ascending, last
    /// descending, as PartiQL says.
    pub nulls_first: Option<bool>,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal: `'text'`, `1`, `2.5e3`, `true`, `null`, or a backquoted Ion literal the
    /// lexer could read as JSON or as a timestamp string.
    Literal(Value),
    /// `MISSING`.
    Missing,
    /// `?`: the parameter of this number (from 0).
    Param(usize, Pos),
    /// A name: a variable, or (when no variable has it) a field of the only `FROM`
    /// variable. `@x` is the same as `x`.
    Name(String, Pos),
    /// `e.field`.
    Field(Box<Expr>, String),
    /// `e[index]`.
    Index(Box<Expr>, Box<Expr>),
    /// `{'k': v, ...}`: keys are expressions that evaluate to strings.
    Struct(Vec<(Expr, Expr)>),
    /// `[v, ...]`.
    List(Vec<Expr>),
    /// `<<v, ...>>`.
    Bag(Vec<Expr>),
    /// A unary operator.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operator.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `e [NOT] LIKE pattern [ESCAPE c]`.
    Like {
        /// The value.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// The escape character.
        escape: Option<Box<Expr>>,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `e [NOT] BETWEEN low AND high`.
    Between {
        /// The value.
        expr: Box<Expr>,
        /// Low bound, inclusive.
        low: Box<Expr>,
        /// High bound, inclusive.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `e [NOT] IN (a, b, ...)` or `e [NOT] IN expr` (a list, bag or parameter).
    In {
        /// The value.
        expr: Box<Expr>,
        /// The candidates: `(a, b)` parses as a [`Expr::List`].
        list: Box<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e IS [NOT] NULL | MISSING`.
    Is {
        /// The value.
        expr: Box<Expr>,
        /// `MISSING` rather than `NULL`.
        missing: bool,
        /// `IS NOT`.
        negated: bool,
    },
    /// A function call other than an aggregate: `name(args)`; the name is lowercased.
    Call {
        /// The name, lowercase.
        name: String,
        /// The arguments.
        args: Vec<Expr>,
        /// Where the name starts.
        pos: Pos,
    },
    /// `CAST(e AS type)`; the type name is lowercased (`string`, `int`, `decimal`, ...).
    Cast {
        /// The value.
        expr: Box<Expr>,
        /// The type name, lowercase.
        to: String,
        /// Where `CAST` starts.
        pos: Pos,
    },
    /// `CASE [operand] WHEN ... THEN ... [ELSE ...] END`.
    Case {
        /// The simple form's operand.
        operand: Option<Box<Expr>>,
        /// `(WHEN, THEN)` pairs.
        arms: Vec<(Expr, Expr)>,
        /// `ELSE`.
        otherwise: Option<Box<Expr>>,
    },
    /// An aggregate: `COUNT(*)`, `COUNT([DISTINCT] e)`, `SUM`, `AVG`, `MIN`, `MAX`.
    Aggregate {
        /// Which.
        func: Aggregate,
        /// The argument; `None` for `COUNT(*)`.
        arg: Option<Box<Expr>>,
        /// `DISTINCT`.
        distinct: bool,
        /// Where the name starts.
        pos: Pos,
    },
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `COUNT`.
    Count,
    /// `SUM`.
    Sum,
    /// `AVG`.
    Avg,
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `NOT`.
    Not,
    /// `-`.
    Neg,
    /// `+`.
    Plus,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `OR`.
    Or,
    /// `AND`.
    And,
    /// `=`.
    Eq,
    /// `<>` or `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `||`.
    Concat,
}
