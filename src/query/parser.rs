//! The parser: statement text to [`Statement`]s (the AST is in [`super::ast`]).
//!
//! A hand-written lexer (`lexer.rs`) and a recursive-descent parser, with precedence
//! climbing for operators. Lowest to highest: `OR`; `AND`; prefix `NOT`; comparisons and
//! predicates (`= <> != < <= > >=`, `[NOT] LIKE`, `[NOT] BETWEEN`, `[NOT] IN`, `IS [NOT]`);
//! `||`; `+ -`; `* / %`; prefix `- +`; postfix `.field` and `[index]`.
//!
//! Errors give the line and column (1-based, in characters) of the offending token, the
//! token, and what was expected there. Constructs of PartiQL that graven does not run
//! (`GROUP BY`, subqueries, `PIVOT`, ...) are named as unsupported rather than reported as
//! syntax errors. The parser never panics and never recurses without bound: the AST it
//! builds is at most about [`MAX_DEPTH`] levels deep.

use std::fmt;

use serde_json::Value;

use super::ast::{
    Aggregate, BinaryOp, Change, Expr, FromItem, IndexRef, Join, JoinKind, OrderBy, PathStep, Pos,
    Projection, Select, SelectItem, Source, SourceKind, Statement, Target, UnaryOp,
};
use super::lexer::{self, Tok, Token};

/// How deeply a statement may nest: each bracket (`(`, `[`, `{`, `<<`, a call's arguments,
/// `CASE`, `CAST`), prefix operator, postfix step (`.f`, `[i]`) and operator in a chain
/// (`a AND b AND c` is two) counts as a level, since each makes the AST one level deeper.
/// Past it, a [`ParseError`], never a stack overflow.
pub const MAX_DEPTH: usize = 128;

/// Words that are never a name (table, alias, variable) unless double-quoted. Other
/// keywords (`TABLE`, `INDEX`, `INTO`, `NULLS`, `FIRST`, `history`, `count`, ...) only mean
/// something where the grammar expects them, so they remain usable as names.
const RESERVED: &str = "ALL AND AS ASC AT BETWEEN BY CASE CAST CREATE CROSS DELETE DESC \
    DISTINCT DROP ELSE END ESCAPE EXCEPT EXISTS EXPLAIN FALSE FROM FULL GROUP HAVING IN INNER \
    INSERT INTERSECT IS JOIN LEFT LET LIKE LIMIT MISSING NOT NULL OFFSET ON OR ORDER OUTER \
    PIVOT REMOVE RIGHT SELECT SET THEN TRUE UNION UNPIVOT UPDATE VALUE VALUES WHEN WHERE WITH";

/// Clauses and operators of PartiQL that graven does not run, named when met.
const UNSUPPORTED: &str = "GROUP HAVING LET UNION INTERSECT EXCEPT PIVOT UNPIVOT";

/// Whether `word` is one of the space-separated keywords of `list` (any case).
fn among(word: &str, list: &str) -> bool {
    list.split_ascii_whitespace()
        .any(|k| k.eq_ignore_ascii_case(word))
}

/// Parses `text`: one or more statements separated by `;` (a trailing `;` is allowed;
/// empty text or only `;` is an error). `?` parameters are numbered from 0 across the
/// whole text, in order of appearance.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut parser = Parser::new(text, lexer::tokenize(text)?);
    let mut statements = Vec::new();
    loop {
        statements.push(parser.statement()?);
        let separated = parser.eat_sym(";");
        if parser.at_eof() {
            break;
        }
        if !separated {
            return Err(parser.expected("`;` between statements"));
        }
    }
    Ok(Parsed {
        statements,
        parameters: parser.params,
    })
}

/// What [`parse`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The statements, in order.
    pub statements: Vec<Statement>,
    /// How many `?` parameters the text has (they are numbered `0..parameters`).
    pub parameters: usize,
}

/// Why a text is not a statement: where, the token found there, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the offending token starts.
    pub pos: Pos,
    /// Its text (at most about 40 characters), or `end of input`.
    pub token: String,
    /// What was expected and found, or what is not supported.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pos { line, column } = self.pos;
        write!(f, "line {line}, column {column}: {}", self.message)
    }
}

impl std::error::Error for ParseError {}

/// Binding powers of the binary operators and predicates (higher binds tighter).
const OR: u8 = 1;
const AND: u8 = 2;
const NOT: u8 = 3;
const COMPARE: u8 = 4;
const CONCAT: u8 = 5;
const ADD: u8 = 6;
const MUL: u8 = 7;

/// An operator that may follow an operand; the `bool` is `NOT LIKE` (etc.).
#[derive(Clone, Copy)]
enum Infix {
    Binary(BinaryOp),
    Like(bool),
    Between(bool),
    In(bool),
    Is,
}

/// A parser's result.
type Parse<T> = Result<T, ParseError>;

/// The parser's state: the tokens, where it is, the parameters numbered so far and how
/// deeply it is nested.
struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    next: usize,
    /// Returned past the end (the lexer ends the tokens with one, too).
    eof: Token,
    params: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, tokens: Vec<Token>) -> Self {
        let (end, pos) = (src.len(), Pos { line: 1, column: 1 });
        let eof = tokens.last().cloned().unwrap_or(Token {
            tok: Tok::Eof,
            pos,
            start: end,
            end,
        });
        Parser {
            src,
            tokens,
            next: 0,
            eof,
            params: 0,
            depth: 0,
        }
    }

    // ----- Tokens -----

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let at = self.next.saturating_add(ahead);
        self.tokens.get(at).unwrap_or(&self.eof)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        self.next = (self.next + 1).min(self.tokens.len());
        token
    }

    fn at_eof(&self) -> bool {
        self.peek().tok == Tok::Eof
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.peek().is_kw(kw)
    }

    fn is_sym(&self, sym: &str) -> bool {
        self.peek().is_sym(sym)
    }

    /// Consumes keyword `kw` if it is next.
    fn eat_kw(&mut self, kw: &str) -> bool {
        self.is_kw(kw).then(|| self.advance()).is_some()
    }

    /// Consumes `sym` if it is next.
    fn eat_sym(&mut self, sym: &str) -> bool {
        self.is_sym(sym).then(|| self.advance()).is_some()
    }

    /// Consumes keyword `kw`, or fails with "expected {what}".
    fn expect_kw(&mut self, kw: &str, what: &str) -> Parse<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Consumes `sym`, or fails with "expected {what}".
    fn expect_sym(&mut self, sym: &str, what: &str) -> Parse<()> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// `kw expr`, if the next token is `kw`.
    fn kw_expr(&mut self, kw: &str) -> Parse<Option<Expr>> {
        if self.eat_kw(kw) {
            self.expr().map(Some)
        } else {
            Ok(None)
        }
    }

    /// `kw name`, if the next token is `kw`.
    fn kw_name(&mut self, kw: &str) -> Parse<Option<String>> {
        if !self.eat_kw(kw) {
            return Ok(None);
        }
        self.name(&format!("a name after {kw}")).map(Some)
    }

    /// `item [, item]...`.
    fn comma<T>(&mut self, mut item: impl FnMut(&mut Self) -> Parse<T>) -> Parse<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.eat_sym(",") {
            items.push(item(self)?);
        }
        Ok(items)
    }

    // ----- Errors -----

    /// The text of `token` for an error: at most about 40 characters, or `end of input`.
    fn token_text(&self, token: &Token) -> String {
        match token.tok {
            Tok::Eof => "end of input".to_owned(),
            _ => lexer::snippet(self.src.get(token.start..token.end).unwrap_or("")),
        }
    }

    /// An error about the next token.
    fn error(&self, message: impl Into<String>) -> ParseError {
        let token = self.peek();
        let (pos, token, message) = (token.pos, self.token_text(token), message.into());
        ParseError {
            pos,
            token,
            message,
        }
    }

    /// "expected {what}, found `token`".
    fn expected(&self, what: &str) -> ParseError {
        let found = match self.peek().tok {
            Tok::Eof => "end of input".to_owned(),
            _ => format!("`{}`", self.token_text(self.peek())),
        };
        self.error(format!("expected {what}, found {found}"))
    }

    /// Checks that the statement ends here (`;` or the end of the text). Otherwise the
    /// error names an unsupported clause found there, or says "expected {what}".
    fn expect_end(&self, what: &str) -> Parse<()> {
        match &self.peek().tok {
            Tok::Eof | Tok::Sym(";") => Ok(()),
            Tok::Word(w) if among(w, UNSUPPORTED) => Err(self.unsupported(w)),
            _ => Err(self.expected(what)),
        }
    }

    /// "{construct} is not supported", for a word of [`UNSUPPORTED`] or a join.
    fn unsupported(&self, word: &str) -> ParseError {
        let construct = match word.to_ascii_uppercase().as_str() {
            "GROUP" => "GROUP BY".to_owned(),
            join @ ("RIGHT" | "FULL") => format!("{join} [OUTER] JOIN"),
            other => other.to_owned(),
        };
        self.error(format!("{construct} is not supported"))
    }

    /// Counts one more nesting level; fails past [`MAX_DEPTH`]. An error ends the parse,
    /// so only success paths need to restore the depth (with [`Self::ascend`], or by
    /// resetting it to what it was).
    fn descend(&mut self) -> Parse<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let message = format!("the statement nests deeper than {MAX_DEPTH} levels");
            return Err(self.error(message));
        }
        Ok(())
    }

    /// Leaves a level that [`Self::descend`] counted.
    fn ascend(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ----- Names -----

    /// The next token as a name: a quoted identifier, or a word that is not reserved
    /// (any word, if `any_word`).
    fn name_text(&self, any_word: bool) -> Option<String> {
        match &self.peek().tok {
            Tok::Word(w) if any_word || !among(w, RESERVED) => Some(w.clone()),
            Tok::Quoted(name) => Some(name.clone()),
            _ => None,
        }
    }

    /// A name (table, alias, variable).
    fn name(&mut self, what: &str) -> Parse<String> {
        let name = self.name_text(false).ok_or_else(|| self.expected(what))?;
        self.advance();
        Ok(name)
    }

    /// A field name after `.`: any word (`h.metadata`, `x.value`) or a quoted identifier.
    fn field_name(&mut self) -> Parse<String> {
        let name = self.name_text(true);
        let name = name.ok_or_else(|| self.expected("a field name after `.`"))?;
        self.advance();
        Ok(name)
    }

    /// `[AS] name`.
    fn alias(&mut self) -> Parse<Option<String>> {
        if self.eat_kw("AS") {
            return self.name("a name after AS").map(Some);
        }
        let name = self.name_text(false);
        if name.is_some() {
            self.advance();
        }
        Ok(name)
    }

    // ----- Statements -----

    fn statement(&mut self) -> Parse<Statement> {
        let word = match &self.peek().tok {
            Tok::Word(w) => w.to_ascii_uppercase(),
            _ => String::new(),
        };
        match word.as_str() {
            "SELECT" => Ok(Statement::Select(Box::new(self.select()?))),
            "INSERT" => self.insert(),
            "UPDATE" => self.update(),
            "FROM" => self.qldb_update(),
            "DELETE" => self.delete(),
            "CREATE" => self.create(),
            "DROP" => self.drop(),
            "EXPLAIN" => {
                let (base, mut explains) = (self.depth, 0);
                while self.eat_kw("EXPLAIN") {
                    self.descend()?;
                    explains += 1;
                }
                let mut statement = self.statement()?;
                for _ in 0..explains {
                    statement = Statement::Explain(Box::new(statement));
                }
                self.depth = base;
                Ok(statement)
            }
            "PIVOT" => Err(self.unsupported("PIVOT")),
            _ => Err(self.expected(
                "a statement (SELECT, INSERT, UPDATE, DELETE, FROM, CREATE, DROP or EXPLAIN)",
            )),
        }
    }

    /// `SELECT [DISTINCT] projection [FROM ... [WHERE e] [ORDER BY ...] [LIMIT e] [OFFSET e]]`.
    fn select(&mut self) -> Parse<Select> {
        let pos = self.advance().pos;
        let distinct = self.eat_kw("DISTINCT");
        if !distinct {
            self.eat_kw("ALL");
        }
        let projection = if self.eat_sym("*") {
            Projection::Star
        } else if self.eat_kw("VALUE") {
            Projection::Value(self.expr()?)
        } else {
            Projection::Items(self.comma(|p| {
                let expr = p.expr()?;
                Ok(SelectItem {
                    expr,
                    alias: p.alias()?,
                })
            })?)
        };
        let mut s = Select {
            projection,
            distinct,
            from: Vec::new(),
            filter: None,
            order_by: Vec::new(),
            limit: None,
            offset: None,
            pos,
        };
        if !self.eat_kw("FROM") {
            self.expect_end("FROM or a statement end after the SELECT list")?;
            return Ok(s);
        }
        s.from = self.comma(Self::source_and_joins)?;
        let mut next = "WHERE, ORDER BY, LIMIT, OFFSET or a statement end after the FROM clause";
        if let Some(filter) = self.kw_expr("WHERE")? {
            s.filter = Some(filter);
            next = "ORDER BY, LIMIT, OFFSET or a statement end after the WHERE clause";
        }
        if self.eat_kw("ORDER") {
            self.expect_kw("BY", "BY after ORDER")?;
            s.order_by = self.comma(Self::order_key)?;
            next = "LIMIT, OFFSET or a statement end after ORDER BY";
        }
        if let Some(limit) = self.kw_expr("LIMIT")? {
            s.limit = Some(limit);
            next = "OFFSET or a statement end after LIMIT";
        }
        s.offset = self.kw_expr("OFFSET")?;
        if s.offset.is_some() {
            next = "a statement end after OFFSET";
        }
        self.expect_end(next)?;
        Ok(s)
    }

    /// `expr [ASC | DESC] [NULLS FIRST | NULLS LAST]`.
    fn order_key(&mut self) -> Parse<OrderBy> {
        let expr = self.expr()?;
        let descending = self.eat_kw("DESC");
        if !descending {
            self.eat_kw("ASC");
        }
        let mut nulls_first = None;
        if self.eat_kw("NULLS") {
            let first = self.eat_kw("FIRST");
            if !first {
                self.expect_kw("LAST", "FIRST or LAST after NULLS")?;
            }
            nulls_first = Some(first);
        }
        Ok(OrderBy {
            expr,
            descending,
            nulls_first,
        })
    }

    /// A source and the joins after it.
    fn source_and_joins(&mut self) -> Parse<FromItem> {
        let source = self.source()?;
        let mut joins = Vec::new();
        while let Some(kind) = self.join_kind()? {
            let source = self.source()?;
            let on = match kind {
                JoinKind::Cross => None,
                JoinKind::Inner => self.kw_expr("ON")?,
                JoinKind::Left => {
                    self.expect_kw("ON", "ON after LEFT JOIN's source")?;
                    Some(self.expr()?)
                }
            };
            joins.push(Join { kind, source, on });
        }
        Ok(FromItem { source, joins })
    }

    /// `[INNER] JOIN`, `LEFT [OUTER] JOIN`, `CROSS JOIN`, or `None` if no join follows.
    fn join_kind(&mut self) -> Parse<Option<JoinKind>> {
        if self.eat_kw("JOIN") {
            return Ok(Some(JoinKind::Inner));
        }
        let kind = if self.eat_kw("INNER") {
            JoinKind::Inner
        } else if self.eat_kw("LEFT") {
            self.eat_kw("OUTER");
            JoinKind::Left
        } else if self.eat_kw("CROSS") {
            JoinKind::Cross
        } else if self.is_kw("RIGHT") || self.is_kw("FULL") {
            return Err(self.unsupported(&self.token_text(self.peek())));
        } else {
            return Ok(None);
        };
        self.expect_kw("JOIN", "JOIN")?;
        Ok(Some(kind))
    }

    /// A source: a table, `_ql_committed_t`, `history(t [, start [, end]])` or an
    /// expression, then `[AS] alias`, `AT name`, `BY name`.
    fn source(&mut self) -> Parse<Source> {
        let pos = self.peek().pos;
        if self.is_kw("UNPIVOT") {
            return Err(self.unsupported("UNPIVOT"));
        }
        let call_or_path = matches!(self.peek_at(1).tok, Tok::Sym("." | "[" | "("));
        let kind = if self.is_kw("history") && self.peek_at(1).is_sym("(") {
            self.advance();
            self.advance();
            let table = self.name("a table name in history(...)")?;
            let start = if self.eat_sym(",") {
                Some(self.expr()?)
            } else {
                None
            };
            let end = if start.is_some() && self.eat_sym(",") {
                Some(self.expr()?)
            } else {
                None
            };
            self.expect_sym(")", "`,` or `)` in history(...)")?;
            SourceKind::History { table, start, end }
        } else if let Some(name) = self.name_text(false).filter(|_| !call_or_path) {
            let kind = match name.strip_prefix("_ql_committed_") {
                Some("") => return Err(self.error("`_ql_committed_` needs a table name after it")),
                Some(table) => SourceKind::Committed(table.to_owned()),
                None => SourceKind::Table(name),
            };
            self.advance();
            kind
        } else {
            SourceKind::Expr(self.expr()?)
        };
        let alias = self.alias()?;
        let (at, by) = (self.kw_name("AT")?, self.kw_name("BY")?);
        Ok(Source {
            kind,
            alias,
            at,
            by,
            pos,
        })
    }

    /// `INSERT INTO t VALUE e`, `INSERT INTO t << e, ... >>`, `INSERT INTO t ?`.
    fn insert(&mut self) -> Parse<Statement> {
        let pos = self.advance().pos;
        self.expect_kw("INTO", "INTO after INSERT")?;
        let table = self.name("a table name after INSERT INTO")?;
        let param = self.peek().tok == Tok::Param;
        let value = if self.eat_kw("VALUE") || self.is_sym("<<") || param {
            self.expr()?
        } else if self.is_sym("(") || self.is_kw("VALUES") {
            return Err(self.error(
                "use INSERT INTO t VALUE {...} (PartiQL); column lists and VALUES are not supported",
            ));
        } else {
            return Err(self.expected("VALUE, `<<` or `?` after the table name"));
        };
        self.expect_end("a statement end after the inserted value")?;
        Ok(Statement::Insert { table, value, pos })
    }

    /// `t [[AS] x] [BY id]` of `UPDATE`, `FROM` and `DELETE`, whose keyword is read.
    fn target(&mut self, pos: Pos) -> Parse<Target> {
        let table = self.name("a table name")?;
        let alias = self.alias()?;
        Ok(Target {
            table,
            alias,
            by: self.kw_name("BY")?,
            pos,
        })
    }

    /// `UPDATE target changes [WHERE e]`.
    fn update(&mut self) -> Parse<Statement> {
        let pos = self.advance().pos;
        let target = self.target(pos)?;
        let changes = self.changes("SET, REMOVE or INSERT INTO after the UPDATE target")?;
        let filter = self.kw_expr("WHERE")?;
        self.expect_end(match filter {
            Some(_) => "a statement end after the WHERE clause",
            None => "SET, REMOVE, INSERT INTO, WHERE or a statement end",
        })?;
        Ok(Statement::Update {
            target,
            filter,
            changes,
        })
    }

    /// QLDB's `FROM target [WHERE e] changes`.
    fn qldb_update(&mut self) -> Parse<Statement> {
        let pos = self.advance().pos;
        let target = self.target(pos)?;
        let filter = self.kw_expr("WHERE")?;
        let changes = self.changes(match filter {
            Some(_) => "SET, REMOVE or INSERT INTO after the WHERE clause",
            None => "WHERE, SET, REMOVE or INSERT INTO after the FROM target",
        })?;
        self.expect_end("SET, REMOVE, INSERT INTO or a statement end")?;
        Ok(Statement::Update {
            target,
            filter,
            changes,
        })
    }

    /// `DELETE FROM target [WHERE e]`.
    fn delete(&mut self) -> Parse<Statement> {
        let pos = self.advance().pos;
        self.expect_kw("FROM", "FROM after DELETE")?;
        let target = self.target(pos)?;
        let filter = self.kw_expr("WHERE")?;
        self.expect_end(match filter {
            Some(_) => "a statement end after the WHERE clause",
            None => "WHERE or a statement end",
        })?;
        Ok(Statement::Delete { target, filter })
    }

    /// One or more of `SET path = e, ...`, `REMOVE path, ...` and `INSERT INTO path VALUE e
    /// [AT e]`; `what` describes them for the error when there is none.
    fn changes(&mut self, what: &str) -> Parse<Vec<Change>> {
        let mut changes = Vec::new();
        loop {
            if self.eat_kw("SET") {
                changes.extend(self.comma(|p| {
                    let path = p.path()?;
                    p.expect_sym("=", "`=` after the path SET writes")?;
                    Ok(Change::Set {
                        path,
                        value: p.expr()?,
                    })
                })?);
            } else if self.eat_kw("REMOVE") {
                changes.extend(self.comma(|p| Ok(Change::Remove { path: p.path()? }))?);
            } else if self.eat_kw("INSERT") {
                self.expect_kw("INTO", "INTO after INSERT")?;
                let path = self.path()?;
                self.expect_kw("VALUE", "VALUE after the path INSERT INTO adds to")?;
                let value = self.expr()?;
                changes.push(Change::InsertInto {
                    path,
                    value,
                    at: self.kw_expr("AT")?,
                });
            } else if changes.is_empty() {
                return Err(self.expected(what));
            } else {
                return Ok(changes);
            }
        }
    }

    /// A path that a change writes: a name, then `.field` and `[e]` steps.
    fn path(&mut self) -> Parse<Expr> {
        let pos = self.peek().pos;
        let name = match &self.peek().tok {
            Tok::At(name) => Some(name.clone()),
            _ => self.name_text(false),
        };
        let what = "a path (a name, then `.field` or `[index]` steps)";
        let name = name.ok_or_else(|| self.expected(what))?;
        self.advance();
        self.postfix(Expr::Name(name, pos))
    }

    /// `CREATE TABLE t` or `CREATE INDEX ON t (path)`.
    fn create(&mut self) -> Parse<Statement> {
        self.advance();
        if self.eat_kw("TABLE") {
            let table = self.name("a table name after CREATE TABLE")?;
            if self.is_kw("WITH") {
                return Err(self.error("CREATE TABLE ... WITH (tags) is not supported"));
            }
            self.expect_end("a statement end after the table name")?;
            return Ok(Statement::CreateTable { table });
        }
        self.expect_kw("INDEX", "TABLE or INDEX after CREATE")?;
        self.expect_kw("ON", "ON after CREATE INDEX")?;
        let table = self.name("a table name after ON")?;
        let path = self.index_path()?;
        self.expect_end("a statement end after the indexed path")?;
        Ok(Statement::CreateIndex { table, path })
    }

    /// `DROP TABLE t`, `DROP INDEX ON t (path)` or `DROP INDEX "name" ON t`, either with
    /// an optional `WITH (...)` that is ignored (QLDB's `WITH (purge = true)`).
    fn drop(&mut self) -> Parse<Statement> {
        self.advance();
        if self.eat_kw("TABLE") {
            let table = self.name("a table name after DROP TABLE")?;
            self.expect_end("a statement end after the table name")?;
            return Ok(Statement::DropTable { table });
        }
        self.expect_kw("INDEX", "TABLE or INDEX after DROP")?;
        let (table, index) = if self.eat_kw("ON") {
            let table = self.name("a table name after ON")?;
            (table, IndexRef::Path(self.index_path()?))
        } else {
            let name = self.name("ON or the index's name after DROP INDEX")?;
            self.expect_kw("ON", "ON after the index's name")?;
            (self.name("a table name after ON")?, IndexRef::Name(name))
        };
        if self.eat_kw("WITH") {
            // Skip `( ... )`, whatever is inside, without recursion.
            self.expect_sym("(", "`(` after WITH")?;
            let mut open = 1usize;
            while open > 0 {
                match self.advance().tok {
                    Tok::Sym("(") => open += 1,
                    Tok::Sym(")") => open -= 1,
                    Tok::Eof => return Err(self.expected("`)` closing WITH (...)")),
                    _ => {}
                }
            }
        }
        self.expect_end("WITH or a statement end")?;
        Ok(Statement::DropIndex { table, index })
    }

    /// `(name (.name | [n])*)`: an index's path.
    fn index_path(&mut self) -> Parse<Vec<PathStep>> {
        self.expect_sym("(", "`(` and the indexed path")?;
        let mut path = vec![PathStep::Field(self.name("a field name")?)];
        loop {
            if self.eat_sym(".") {
                path.push(PathStep::Field(self.field_name()?));
            } else if self.eat_sym("[") {
                let index = match &self.peek().tok {
                    Tok::Value(Ok(Value::Number(n))) => n.as_u64(),
                    _ => None,
                };
                let index = index.ok_or_else(|| self.expected("an integer index"))?;
                self.advance();
                path.push(PathStep::Index(index));
                self.expect_sym("]", "`]` after the index")?;
            } else {
                self.expect_sym(")", "`.`, `[` or `)` in the indexed path")?;
                return Ok(path);
            }
        }
    }

    // ----- Expressions -----
    //
    // The functions on the recursive path keep their frames small, so that MAX_DEPTH
    // levels fit a small stack even in debug builds (where every temporary has its own
    // stack slot): one construct per function, dispatching by tail calls, few `?` on
    // expressions, errors built out of line; prefix chains (`- -x`, `NOT NOT x`) are loops.

    fn expr(&mut self) -> Parse<Expr> {
        self.binary(0)
    }

    /// The operator after an operand, with its binding power, if there is one.
    fn infix(&self) -> Option<(u8, Infix)> {
        use BinaryOp as B;
        let token = self.peek();
        let binary = |power, op| Some((power, Infix::Binary(op)));
        match &token.tok {
            Tok::Sym("=") => binary(COMPARE, B::Eq),
            Tok::Sym("<>" | "!=") => binary(COMPARE, B::Ne),
            Tok::Sym("<") => binary(COMPARE, B::Lt),
            Tok::Sym("<=") => binary(COMPARE, B::Le),
            Tok::Sym(">") => binary(COMPARE, B::Gt),
            Tok::Sym(">=") => binary(COMPARE, B::Ge),
            Tok::Sym("||") => binary(CONCAT, B::Concat),
            Tok::Sym("+") => binary(ADD, B::Add),
            Tok::Sym("-") => binary(ADD, B::Sub),
            Tok::Sym("*") => binary(MUL, B::Mul),
            Tok::Sym("/") => binary(MUL, B::Div),
            Tok::Sym("%") => binary(MUL, B::Mod),
            Tok::Word(_) if token.is_kw("OR") => binary(OR, B::Or),
            Tok::Word(_) if token.is_kw("AND") => binary(AND, B::And),
            Tok::Word(_) if token.is_kw("IS") => Some((COMPARE, Infix::Is)),
            Tok::Word(_) => {
                let negated = token.is_kw("NOT");
                let word = if negated { self.peek_at(1) } else { token };
                let infix = if word.is_kw("LIKE") {
                    Infix::Like(negated)
                } else if word.is_kw("BETWEEN") {
                    Infix::Between(negated)
                } else if word.is_kw("IN") {
                    Infix::In(negated)
                } else {
                    return None;
                };
                Some((COMPARE, infix))
            }
            _ => None,
        }
    }

    /// Precedence climbing: an operand, then the operators binding at least `min`.
    fn binary(&mut self, min: u8) -> Parse<Expr> {
        let base = self.depth;
        let mut lhs = if self.is_kw("NOT") {
            self.negation()
        } else {
            self.unary()
        }?;
        while let Some((power, infix)) = self.infix().filter(|(power, _)| *power >= min) {
            self.descend()?;
            if self.is_kw("NOT") {
                self.advance(); // of NOT LIKE, NOT BETWEEN, NOT IN
            }
            self.advance();
            lhs = self.apply(Box::new(lhs), power, infix)?;
        }
        self.depth = base;
        Ok(lhs)
    }

    /// `NOT ... NOT operand`, the operand at the level of comparisons.
    fn negation(&mut self) -> Parse<Expr> {
        let (base, mut nots) = (self.depth, 0);
        while self.eat_kw("NOT") {
            self.descend()?;
            nots += 1;
        }
        let mut expr = self.binary(NOT + 1)?;
        for _ in 0..nots {
            expr = Expr::Unary(UnaryOp::Not, Box::new(expr));
        }
        self.depth = base;
        Ok(expr)
    }

    /// The operator `infix` (just read) applied to `expr` and the operands after it.
    fn apply(&mut self, expr: Box<Expr>, power: u8, infix: Infix) -> Parse<Expr> {
        match infix {
            Infix::Binary(op) => {
                let rhs = self.binary(power + 1)?;
                Ok(Expr::Binary(op, expr, Box::new(rhs)))
            }
            Infix::Like(negated) => self.like(expr, negated),
            Infix::Between(negated) => self.between(expr, negated),
            Infix::In(negated) => self.in_list(expr, negated),
            Infix::Is => self.is(expr),
        }
    }

    /// An operand of a predicate: at the level of `||`, so that `BETWEEN a AND b` stops
    /// before the `AND`.
    fn operand(&mut self) -> Parse<Box<Expr>> {
        Ok(Box::new(self.binary(CONCAT)?))
    }

    /// `pattern [ESCAPE e]` after `[NOT] LIKE`.
    fn like(&mut self, expr: Box<Expr>, negated: bool) -> Parse<Expr> {
        let pattern = self.operand()?;
        let escape = if self.eat_kw("ESCAPE") {
            Some(self.operand()?)
        } else {
            None
        };
        Ok(Expr::Like {
            expr,
            pattern,
            escape,
            negated,
        })
    }

    /// `low AND high` after `[NOT] BETWEEN`.
    fn between(&mut self, expr: Box<Expr>, negated: bool) -> Parse<Expr> {
        let low = self.operand()?;
        self.expect_kw("AND", "AND after BETWEEN's low bound")?;
        let high = self.operand()?;
        Ok(Expr::Between {
            expr,
            low,
            high,
            negated,
        })
    }

    /// `(a, ...)` or an operand after `[NOT] IN`.
    fn in_list(&mut self, expr: Box<Expr>, negated: bool) -> Parse<Expr> {
        let list = if self.is_sym("(") {
            Box::new(Expr::List(self.elements("(", ")")?))
        } else {
            self.operand()?
        };
        Ok(Expr::In {
            expr,
            list,
            negated,
        })
    }

    /// `[NOT] NULL | MISSING` after `IS`.
    fn is(&mut self, expr: Box<Expr>) -> Parse<Expr> {
        let negated = self.eat_kw("NOT");
        let missing = self.eat_kw("MISSING");
        if !missing && !self.eat_kw("NULL") {
            return Err(self.expected("NULL or MISSING after IS"));
        }
        Ok(Expr::Is {
            expr,
            missing,
            negated,
        })
    }

    /// Prefix `-` and `+`, then a primary with its postfix steps.
    fn unary(&mut self) -> Parse<Expr> {
        if matches!(self.peek().tok, Tok::Sym("-" | "+")) {
            return self.prefixed();
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    /// [`Self::unary`] with prefix operators.
    fn prefixed(&mut self) -> Parse<Expr> {
        let base = self.depth;
        let mut ops = Vec::new();
        loop {
            match self.peek().tok {
                Tok::Sym("-") => ops.push(UnaryOp::Neg),
                Tok::Sym("+") => ops.push(UnaryOp::Plus),
                _ => break,
            }
            self.advance();
            self.descend()?;
        }
        let primary = self.primary()?;
        let mut expr = self.postfix(primary)?;
        while let Some(op) = ops.pop() {
            expr = Expr::Unary(op, Box::new(expr));
        }
        self.depth = base;
        Ok(expr)
    }

    /// `.field`, `."Quoted"` and `[e]` steps after `expr`.
    fn postfix(&mut self, mut expr: Expr) -> Parse<Expr> {
        let base = self.depth;
        loop {
            if self.is_sym(".") {
                self.advance();
                self.descend()?;
                if self.is_sym("*") {
                    return Err(self.error("`x.*` projections are not supported"));
                }
                expr = Expr::Field(Box::new(expr), self.field_name()?);
            } else if self.is_sym("[") {
                self.descend()?;
                expr = Expr::Index(Box::new(expr), self.index()?);
            } else {
                self.depth = base;
                return Ok(expr);
            }
        }
    }

    /// `[e]`.
    fn index(&mut self) -> Parse<Box<Expr>> {
        self.advance();
        let index = self.expr()?;
        self.expect_sym("]", "`]` after the index")?;
        Ok(Box::new(index))
    }

    /// A literal, parameter, name, call, bracketed expression or collection.
    fn primary(&mut self) -> Parse<Expr> {
        match self.peek().tok {
            Tok::Word(_) => self.word(),
            Tok::Sym("(") => self.parenthesized(),
            Tok::Sym("[") => self.elements("[", "]").map(Expr::List),
            Tok::Sym("<<") => self.elements("<<", ">>").map(Expr::Bag),
            Tok::Sym("{") => self.structure(),
            _ => self.leaf(),
        }
    }

    /// `(e)`.
    fn parenthesized(&mut self) -> Parse<Expr> {
        self.advance();
        self.descend()?;
        let expr = self.expr()?;
        self.expect_sym(")", "`)`")?;
        self.ascend();
        Ok(expr)
    }

    /// A literal, parameter or name that is not a word.
    fn leaf(&mut self) -> Parse<Expr> {
        let Token { tok, pos, .. } = self.peek().clone();
        let expr = match tok {
            Tok::Value(Ok(value)) => Expr::Literal(value),
            Tok::Value(Err(message)) => return Err(self.error(message)),
            Tok::Str(text) => Expr::Literal(Value::String(text)),
            Tok::Param => {
                self.params += 1;
                Expr::Param(self.params - 1, pos)
            }
            Tok::Quoted(name) | Tok::At(name) => Expr::Name(name, pos),
            Tok::Sym("*") if self.peek_at(1).is_sym(")") => {
                return Err(self.error("`*` is only an argument of COUNT(*)"));
            }
            _ => return Err(self.expected("an expression")),
        };
        self.advance();
        Ok(expr)
    }

    /// An expression that starts with a word: a keyword's construct, a call or a name.
    fn word(&mut self) -> Parse<Expr> {
        let Token {
            tok: Tok::Word(word),
            pos,
            ..
        } = self.peek().clone()
        else {
            return self.leaf();
        };
        let call = self.peek_at(1).is_sym("(");
        let expr = match word.to_ascii_uppercase().as_str() {
            "TRUE" => Expr::Literal(Value::Bool(true)),
            "FALSE" => Expr::Literal(Value::Bool(false)),
            "NULL" => Expr::Literal(Value::Null),
            "MISSING" => Expr::Missing,
            "CASE" => return self.case(),
            "CAST" => return self.cast(pos),
            "EXISTS" if call => return self.call(&word, pos),
            "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" if call => return self.aggregate(&word, pos),
            _ if among(&word, RESERVED) => return Err(self.misplaced_keyword(&word)),
            _ if call => return self.call(&word, pos),
            _ => Expr::Name(word, pos),
        };
        self.advance();
        Ok(expr)
    }

    /// The error for a reserved word where an expression should be.
    #[cold]
    fn misplaced_keyword(&mut self, word: &str) -> ParseError {
        if word.eq_ignore_ascii_case("SELECT") {
            return self.error("subqueries are not supported");
        }
        if word.eq_ignore_ascii_case("EXISTS") {
            self.advance();
            return self.expected("`(` after EXISTS");
        }
        self.expected("an expression")
    }

    /// `COUNT(*)`, `COUNT([DISTINCT | ALL] e)`, `SUM(...)`, ...
    fn aggregate(&mut self, name: &str, pos: Pos) -> Parse<Expr> {
        let func = match name.to_ascii_uppercase().as_str() {
            "COUNT" => Aggregate::Count,
            "SUM" => Aggregate::Sum,
            "AVG" => Aggregate::Avg,
            "MIN" => Aggregate::Min,
            _ => Aggregate::Max,
        };
        self.advance();
        self.advance();
        self.descend()?;
        let distinct = self.eat_kw("DISTINCT");
        if !distinct {
            self.eat_kw("ALL");
        }
        let star = func == Aggregate::Count && !distinct && self.eat_sym("*");
        let arg = if star {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        if !self.eat_sym(")") {
            return Err(self.expected_after_argument(name));
        }
        self.ascend();
        Ok(Expr::Aggregate {
            func,
            arg,
            distinct,
            pos,
        })
    }

    /// `name(e, ...)`, named in lowercase; also `SUBSTRING(s FROM a [FOR b])` and
    /// `EXTRACT(part FROM e)`, as `[s, a, b]` and `[part, e]`.
    fn call(&mut self, name: &str, pos: Pos) -> Parse<Expr> {
        let name = name.to_ascii_lowercase();
        self.advance();
        self.advance();
        self.descend()?;
        if name == "trim"
            && ["BOTH", "LEADING", "TRAILING"]
                .iter()
                .any(|kw| self.is_kw(kw))
        {
            return Err(self.error("TRIM with BOTH, LEADING or TRAILING is not supported"));
        }
        let keywords = match name.as_str() {
            "substring" => ["FROM", "FOR"].as_slice(),
            "extract" => &["FROM"],
            _ => &[],
        };
        let mut args = Vec::new();
        while !self.is_sym(")") {
            let separated = match args.len() {
                0 => true,
                n => self.eat_sym(",") || keywords.get(n - 1).is_some_and(|kw| self.eat_kw(kw)),
            };
            if !separated {
                return Err(self.expected_in_call(&name));
            }
            args.push(self.expr()?);
        }
        self.advance();
        self.ascend();
        Ok(Expr::Call { name, args, pos })
    }

    #[cold]
    fn expected_in_call(&self, name: &str) -> ParseError {
        if name == "trim" && self.is_kw("FROM") {
            return self.error("TRIM(... FROM ...) is not supported: use TRIM(s)");
        }
        self.expected(&format!("`,` or `)` in {name}(...)"))
    }

    #[cold]
    fn expected_after_argument(&self, name: &str) -> ParseError {
        self.expected(&format!(
            "`)` after {}'s argument",
            name.to_ascii_uppercase()
        ))
    }

    #[cold]
    fn expected_close(&self, close: &str) -> ParseError {
        self.expected(&format!("`,` or `{close}`"))
    }

    /// `CASE [operand] WHEN e THEN e ... [ELSE e] END`.
    fn case(&mut self) -> Parse<Expr> {
        self.advance();
        self.descend()?;
        let operand = if self.is_kw("WHEN") || self.is_kw("END") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut arms = Vec::new();
        while self.eat_kw("WHEN") {
            let when = self.expr()?;
            self.expect_kw("THEN", "THEN after WHEN's condition")?;
            arms.push((when, self.expr()?));
        }
        if arms.is_empty() {
            return Err(self.expected("WHEN in CASE"));
        }
        let otherwise = self.kw_expr("ELSE")?.map(Box::new);
        self.expect_kw("END", "WHEN, ELSE or END in CASE")?;
        self.ascend();
        Ok(Expr::Case {
            operand,
            arms,
            otherwise,
        })
    }

    /// `CAST(e AS type)`; a type of several words (`DOUBLE PRECISION`) is joined by spaces.
    fn cast(&mut self, pos: Pos) -> Parse<Expr> {
        self.advance();
        self.expect_sym("(", "`(` after CAST")?;
        self.descend()?;
        let expr = Box::new(self.expr()?);
        self.expect_kw("AS", "AS in CAST(... AS type)")?;
        let mut words = Vec::new();
        while let Tok::Word(word) = &self.peek().tok {
            words.push(word.to_ascii_lowercase());
            self.advance();
        }
        if words.is_empty() {
            return Err(self.expected("a type name after AS"));
        }
        self.expect_sym(")", "`)` after CAST's type")?;
        self.ascend();
        Ok(Expr::Cast {
            expr,
            to: words.join(" "),
            pos,
        })
    }

    /// `open e, ... close`: a list, bag or `IN (...)`. `[]` and `<<>>` are empty
    /// collections; `()` is refused.
    fn elements(&mut self, open: &str, close: &'static str) -> Parse<Vec<Expr>> {
        self.advance();
        self.descend()?;
        let mut items = Vec::new();
        if open == "(" || !self.eat_sym(close) {
            loop {
                items.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            if !self.eat_sym(close) {
                return Err(self.expected_close(close));
            }
        }
        self.ascend();
        Ok(items)
    }

    /// `{key: value, ...}`. A key that is a bare or quoted identifier followed by `:` is
    /// that text, as JSON writes keys; otherwise it is an expression.
    fn structure(&mut self) -> Parse<Expr> {
        self.advance();
        self.descend()?;
        let mut fields = Vec::new();
        if !self.eat_sym("}") {
            loop {
                let key = match self.name_text(true) {
                    Some(key) if self.peek_at(1).is_sym(":") => {
                        self.advance();
                        Expr::Literal(Value::String(key))
                    }
                    _ => self.expr()?,
                };
                self.expect_sym(":", "`:` after the struct key")?;
                fields.push((key, self.expr()?));
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym("}", "`,` or `}` in the struct")?;
        }
        self.ascend();
        Ok(Expr::Struct(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AST as compact text, positions left out (tests check them separately): SQL-like
    /// for statements, `(Op a b)` for operators, JSON for literals, `?n` for parameters.
    fn show(stmt: &Statement) -> String {
        let wher = |f: &Option<Expr>| {
            f.as_ref()
                .map_or(String::new(), |e| format!(" WHERE {}", ex(e)))
        };
        let target =
            |t: &Target| format!("{}{}{}", t.table, opt(" AS ", &t.alias), opt(" BY ", &t.by));
        match stmt {
            Statement::Select(s) => {
                let mut out = format!("SELECT {}", if s.distinct { "DISTINCT " } else { "" });
                out += &match &s.projection {
                    Projection::Star => "*".to_owned(),
                    Projection::Value(e) => format!("VALUE {}", ex(e)),
                    Projection::Items(items) => join(
                        items
                            .iter()
                            .map(|i| format!("{}{}", ex(&i.expr), opt(" AS ", &i.alias))),
                    ),
                };
                if !s.from.is_empty() {
                    out += &format!(
                        " FROM {}",
                        join(s.from.iter().map(|item| {
                            let joins = item.joins.iter().map(|j| {
                                let on =
                                    j.on.as_ref()
                                        .map_or(String::new(), |e| format!(" ON {}", ex(e)));
                                format!(" {:?} JOIN {}{on}", j.kind, source(&j.source))
                            });
                            source(&item.source) + &joins.collect::<String>()
                        }))
                    );
                }
                out += &wher(&s.filter);
                if !s.order_by.is_empty() {
                    out += &format!(
                        " ORDER BY {}",
                        join(s.order_by.iter().map(|o| {
                            let nulls = o
                                .nulls_first
                                .map_or("", |f| if f { " NULLS FIRST" } else { " NULLS LAST" });
                            format!(
                                "{}{}{nulls}",
                                ex(&o.expr),
                                if o.descending { " DESC" } else { "" }
                            )
                        }))
                    );
                }
                let limit = s
                    .limit
                    .as_ref()
                    .map_or(String::new(), |e| format!(" LIMIT {}", ex(e)));
                let offset = s
                    .offset
                    .as_ref()
                    .map_or(String::new(), |e| format!(" OFFSET {}", ex(e)));
                out + &limit + &offset
            }
            Statement::Insert { table, value, .. } => format!("INSERT INTO {table} {}", ex(value)),
            Statement::Update {
                target: t,
                filter,
                changes,
            } => {
                let changes = changes.iter().map(|c| match c {
                    Change::Set { path, value } => format!(" SET {} = {}", ex(path), ex(value)),
                    Change::Remove { path } => format!(" REMOVE {}", ex(path)),
                    Change::InsertInto { path, value, at } => {
                        let at = at
                            .as_ref()
                            .map_or(String::new(), |e| format!(" AT {}", ex(e)));
                        format!(" INSERT INTO {} VALUE {}{at}", ex(path), ex(value))
                    }
                });
                format!(
                    "UPDATE {}{}{}",
                    target(t),
                    changes.collect::<String>(),
                    wher(filter)
                )
            }
            Statement::Delete { target: t, filter } => {
                format!("DELETE FROM {}{}", target(t), wher(filter))
            }
            Statement::CreateTable { table } => format!("CREATE TABLE {table}"),
            Statement::DropTable { table } => format!("DROP TABLE {table}"),
            Statement::CreateIndex { table, path } => format!("CREATE INDEX ON {table} {path:?}"),
            Statement::DropIndex { table, index } => format!("DROP INDEX {index:?} ON {table}"),
            Statement::Explain(s) => format!("EXPLAIN {}", show(s)),
        }
    }

    fn source(s: &Source) -> String {
        let kind = match &s.kind {
            SourceKind::Table(t) => t.clone(),
            SourceKind::Committed(t) => format!("committed({t})"),
            SourceKind::History { table, start, end } => {
                let bounds = [start, end]
                    .into_iter()
                    .flatten()
                    .map(|e| format!(", {}", ex(e)));
                format!("history({table}{})", bounds.collect::<String>())
            }
            SourceKind::Expr(e) => format!("expr({})", ex(e)),
        };
        format!(
            "{kind}{}{}{}",
            opt(" AS ", &s.alias),
            opt(" AT ", &s.at),
            opt(" BY ", &s.by)
        )
    }

    fn ex(e: &Expr) -> String {
        let list = |items: &[Expr]| join(items.iter().map(ex));
        let not = |negated: &bool| if *negated { "Not" } else { "" };
        let then = |e: &Option<Box<Expr>>, pre: &str| {
            e.as_ref()
                .map_or(String::new(), |e| format!("{pre}{}", ex(e)))
        };
        match e {
            Expr::Literal(v) => v.to_string(),
            Expr::Missing => "MISSING".to_owned(),
            Expr::Param(n, _) => format!("?{n}"),
            Expr::Name(n, _) => n.clone(),
            Expr::Field(e, f) => format!("{}.{f}", ex(e)),
            Expr::Index(e, i) => format!("{}[{}]", ex(e), ex(i)),
            Expr::Struct(fields) => format!(
                "{{{}}}",
                join(fields.iter().map(|(k, v)| format!("{}: {}", ex(k), ex(v))))
            ),
            Expr::List(items) => format!("[{}]", list(items)),
            Expr::Bag(items) => format!("<<{}>>", list(items)),
            Expr::Unary(op, e) => format!("({op:?} {})", ex(e)),
            Expr::Binary(op, a, b) => format!("({op:?} {} {})", ex(a), ex(b)),
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
            } => {
                format!(
                    "({}Like {} {}{})",
                    not(negated),
                    ex(expr),
                    ex(pattern),
                    then(escape, " ESCAPE ")
                )
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                format!(
                    "({}Between {} {} {})",
                    not(negated),
                    ex(expr),
                    ex(low),
                    ex(high)
                )
            }
            Expr::In {
                expr,
                list,
                negated,
            } => format!("({}In {} {})", not(negated), ex(expr), ex(list)),
            Expr::Is {
                expr,
                missing,
                negated,
            } => {
                format!(
                    "(Is{} {} {})",
                    not(negated),
                    ex(expr),
                    if *missing { "MISSING" } else { "NULL" }
                )
            }
            Expr::Call { name, args, .. } => format!("{name}({})", list(args)),
            Expr::Cast { expr, to, .. } => format!("CAST({} AS {to})", ex(expr)),
            Expr::Case {
                operand,
                arms,
                otherwise,
            } => {
                let arms = arms
                    .iter()
                    .map(|(w, t)| format!(" WHEN {} THEN {}", ex(w), ex(t)));
                format!(
                    "(Case{}{}{})",
                    then(operand, " "),
                    arms.collect::<String>(),
                    then(otherwise, " ELSE ")
                )
            }
            Expr::Aggregate {
                func,
                arg,
                distinct,
                ..
            } => {
                let arg = arg.as_ref().map_or("*".to_owned(), |e| ex(e));
                format!(
                    "{func:?}({}{arg})",
                    if *distinct { "DISTINCT " } else { "" }
                )
            }
        }
    }

    fn opt(prefix: &str, name: &Option<String>) -> String {
        name.as_ref()
            .map_or(String::new(), |n| format!("{prefix}{n}"))
    }

    fn join(items: impl Iterator<Item = String>) -> String {
        items.collect::<Vec<_>>().join(", ")
    }

    fn parse_one(text: &str) -> Statement {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.statements.len(), 1, "{text}");
        parsed.statements.into_iter().next().expect("one statement")
    }

    /// Asserts that each text parses to the AST shown.
    fn check(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            assert_eq!(show(&parse_one(text)), *expected, "{text}");
        }
    }

    fn err(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    #[test]
    fn tutorial_selects() {
        check(&[
            (
                "SELECT * FROM Vehicle AS v WHERE v.VIN = '1N4AL11D75C109151'",
                r#"SELECT * FROM Vehicle AS v WHERE (Eq v.VIN "1N4AL11D75C109151")"#,
            ),
            (
                "SELECT v.VIN FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN \
                 WHERE r.Owners.PrimaryOwner.PersonId = ?",
                "SELECT v.VIN FROM Vehicle AS v Inner JOIN VehicleRegistration AS r ON (Eq v.VIN r.VIN) \
                 WHERE (Eq r.Owners.PrimaryOwner.PersonId ?0)",
            ),
            (
                "SELECT * FROM _ql_committed_VehicleRegistration AS r WHERE r.data.VIN = '1N4AL11D75C109151'",
                r#"SELECT * FROM committed(VehicleRegistration) AS r WHERE (Eq r.data.VIN "1N4AL11D75C109151")"#,
            ),
            (
                "SELECT h.data.VIN, h.data.City, h.data.Owners FROM history(VehicleRegistration) AS h \
                 WHERE h.metadata.id = ?",
                "SELECT h.data.VIN, h.data.City, h.data.Owners FROM history(VehicleRegistration) AS h \
                 WHERE (Eq h.metadata.id ?0)",
            ),
            (
                "SELECT * FROM history(Vehicle, `2019-06-05T00:00:00Z`, `2019-06-05T23:59:59Z`) AS h",
                r#"SELECT * FROM history(Vehicle, "2019-06-05T00:00:00Z", "2019-06-05T23:59:59Z") AS h"#,
            ),
            (
                "SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r.VIN = ?",
                "SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE (Eq r.VIN ?0)",
            ),
            (
                "SELECT COUNT(*) FROM Vehicle",
                "SELECT Count(*) FROM Vehicle",
            ),
            (
                "SELECT VALUE v.VIN FROM Vehicle v ORDER BY v.Year DESC LIMIT 10 OFFSET 5",
                "SELECT VALUE v.VIN FROM Vehicle AS v ORDER BY v.Year DESC LIMIT 10 OFFSET 5",
            ),
            (
                "SELECT * FROM Person AS p, p.Addresses AS a AT i",
                "SELECT * FROM Person AS p, expr(p.Addresses) AS a AT i",
            ),
            (
                "SELECT * FROM t WHERE a BETWEEN 1 AND 2 AND b LIKE 'x%' AND c IS NOT MISSING AND d NOT IN (1, 2)",
                r#"SELECT * FROM t WHERE (And (And (And (Between a 1 2) (Like b "x%")) (IsNot c MISSING)) (NotIn d [1, 2]))"#,
            ),
            (
                "EXPLAIN SELECT * FROM t WHERE x = 1",
                "EXPLAIN SELECT * FROM t WHERE (Eq x 1)",
            ),
        ]);
    }

    #[test]
    fn tutorial_dml_and_ddl() {
        check(&[
            (
                "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ? WHERE r.VIN = ?",
                "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ?0 WHERE (Eq r.VIN ?1)",
            ),
            (
                "FROM VehicleRegistration AS r WHERE r.VIN = ? INSERT INTO r.Owners.SecondaryOwners VALUE { 'PersonId' : ? }",
                r#"UPDATE VehicleRegistration AS r INSERT INTO r.Owners.SecondaryOwners VALUE {"PersonId": ?1} WHERE (Eq r.VIN ?0)"#,
            ),
            (
                "INSERT INTO Person << {'FirstName': 'Raul', 'LastName': 'Lewis'}, {'FirstName': 'Brent'} >>",
                r#"INSERT INTO Person <<{"FirstName": "Raul", "LastName": "Lewis"}, {"FirstName": "Brent"}>>"#,
            ),
            ("INSERT INTO Person ?", "INSERT INTO Person ?0"),
            ("INSERT INTO Person VALUE ?", "INSERT INTO Person ?0"),
            (
                "DELETE FROM VehicleRegistration AS r WHERE r.VIN = ?",
                "DELETE FROM VehicleRegistration AS r WHERE (Eq r.VIN ?0)",
            ),
            ("CREATE TABLE Person", "CREATE TABLE Person"),
            (
                "create index on VehicleRegistration (VIN)",
                r#"CREATE INDEX ON VehicleRegistration [Field("VIN")]"#,
            ),
            (
                "CREATE INDEX ON Person (Address.City)",
                r#"CREATE INDEX ON Person [Field("Address"), Field("City")]"#,
            ),
            (
                "DROP INDEX \"VIN\" ON VehicleRegistration WITH (purge = true)",
                r#"DROP INDEX Name("VIN") ON VehicleRegistration"#,
            ),
            (
                "DROP INDEX ON t (a[2].\"b c\") WITH ((x) y)",
                r#"DROP INDEX Path([Field("a"), Index(2), Field("b c")]) ON t"#,
            ),
            ("DROP TABLE \"Person\"", "DROP TABLE Person"),
            (
                "UPDATE t BY id SET a = 1, b[0].c = 'x' REMOVE d, e.f INSERT INTO g VALUE 2 AT 'k' SET @h = 3",
                r#"UPDATE t BY id SET a = 1 SET b[0].c = "x" REMOVE d REMOVE e.f INSERT INTO g VALUE 2 AT "k" SET h = 3"#,
            ),
            ("FROM t x SET x.a = 1", "UPDATE t AS x SET x.a = 1"),
        ]);
    }

    #[test]
    fn more_of_the_grammar() {
        check(&[
            (
                "select distinct a as x, b y, \"c\" from t order by a asc nulls last, b nulls first",
                "SELECT DISTINCT a AS x, b AS y, c FROM t ORDER BY a NULLS LAST, b NULLS FIRST",
            ),
            (
                "SELECT * FROM a JOIN b ON x LEFT OUTER JOIN c ON y CROSS JOIN @v.items BY id, \"q t\" q",
                "SELECT * FROM a Inner JOIN b ON x Left JOIN c ON y Cross JOIN expr(v.items) BY id, q t AS q",
            ),
            (
                "SELECT 1 + 2 * 3, 1 - 2 - 3",
                "SELECT (Add 1 (Mul 2 3)), (Sub (Sub 1 2) 3)",
            ),
            ("SELECT NOT a = 1 OR b", "SELECT (Or (Not (Eq a 1)) b)"),
            (
                "SELECT -x.y, +1, - -2",
                "SELECT (Neg x.y), (Plus 1), (Neg (Neg 2))",
            ),
            (
                "SELECT 'a' || 'b' = 'ab'",
                r#"SELECT (Eq (Concat "a" "b") "ab")"#,
            ),
            (
                "SELECT [1, 2.5, .5, 1e3, 1.5E-2]",
                "SELECT [1, 2.5, 0.5, 1000.0, 0.015]",
            ),
            ("SELECT <<>>, << <<1>> >>, []", "SELECT <<>>, <<<<1>>>>, []"),
            (
                "SELECT {a: 1, \"b\": 'it''s', 'c' || 'd': null, value: true}",
                r#"SELECT {"a": 1, "b": "it's", (Concat "c" "d"): null, "value": true}"#,
            ),
            (
                "SELECT `{\"a\": [1, false]}`, ` 2019-06-05T `",
                r#"SELECT {"a":[1,false]}, "2019-06-05T""#,
            ),
            (
                "SELECT \"we\"\"ird\".\"x y\"[?], MISSING",
                r#"SELECT we"ird.x y[?0], MISSING"#,
            ),
            (
                "SELECT x IS NULL, x IN ?, y NOT LIKE 'a!%' ESCAPE '!'",
                r#"SELECT (Is x NULL), (In x ?0), (NotLike y "a!%" ESCAPE "!")"#,
            ),
            (
                "SELECT CAST(x AS DOUBLE PRECISION), CAST(y AS int)",
                "SELECT CAST(x AS double precision), CAST(y AS int)",
            ),
            (
                "SELECT CASE WHEN a THEN 1 ELSE 2 END, CASE x WHEN 1 THEN 'a' END",
                r#"SELECT (Case WHEN a THEN 1 ELSE 2), (Case x WHEN 1 THEN "a")"#,
            ),
            (
                "SELECT Sum(DISTINCT x), max(y), count(ALL z)",
                "SELECT Sum(DISTINCT x), Max(y), Count(z)",
            ),
            (
                "SELECT UTCNOW(), SUBSTRING(s FROM 1 FOR 2), trim(s)",
                "SELECT utcnow(), substring(s, 1, 2), trim(s)",
            ),
            (
                "SELECT date_add(day, 1, `2019T`), EXTRACT(YEAR FROM d)",
                r#"SELECT date_add(day, 1, "2019T"), extract(YEAR, d)"#,
            ),
            (
                "SELECT exists(x.list), a = b = c",
                "SELECT exists(x.list), (Eq (Eq a b) c)",
            ),
            ("SELECT 1 /* one */ -- the rest\n", "SELECT 1"),
            (
                "SELECT 9007199254740992, `-9007199254740992`",
                "SELECT 9007199254740992, -9007199254740992",
            ),
        ]);
    }

    #[test]
    fn positions_and_parameters_across_statements() {
        let parsed = parse("SELECT * FROM t WHERE a = ?;\n  UPDATE t SET b = ? WHERE c = ?;")
            .expect("parses");
        assert_eq!(parsed.parameters, 3);
        let shown: Vec<_> = parsed.statements.iter().map(show).collect();
        assert_eq!(
            shown,
            [
                "SELECT * FROM t WHERE (Eq a ?0)",
                "UPDATE t SET b = ?1 WHERE (Eq c ?2)"
            ]
        );
        let Statement::Update {
            target,
            filter: Some(Expr::Binary(_, _, rhs)),
            ..
        } = &parsed.statements[1]
        else {
            panic!("an update with a filter")
        };
        assert_eq!(target.pos, Pos { line: 2, column: 3 });
        assert_eq!(
            **rhs,
            Expr::Param(
                2,
                Pos {
                    line: 2,
                    column: 32
                }
            )
        );

        let Statement::Select(s) =
            parse_one("  SELECT x.y, f(1), CAST(a AS int), MAX(a)\nFROM t,\n  \"é\"")
        else {
            panic!("a select")
        };
        assert_eq!(s.pos, Pos { line: 1, column: 3 });
        let Projection::Items(items) = &s.projection else {
            panic!("items")
        };
        let pos = |e: &Expr| match e {
            Expr::Field(e, _) => match **e {
                Expr::Name(_, pos) => pos,
                _ => panic!("{e:?}"),
            },
            Expr::Call { pos, .. } | Expr::Cast { pos, .. } | Expr::Aggregate { pos, .. } => *pos,
            _ => panic!("{e:?}"),
        };
        let columns: Vec<_> = items.iter().map(|i| pos(&i.expr).column).collect();
        assert_eq!(columns, [10, 15, 21, 37]);
        assert_eq!(s.from[1].source.pos, Pos { line: 3, column: 3 });
        assert_eq!(s.from[1].source.kind, SourceKind::Table("é".into()));
    }

    #[test]
    fn errors_give_position_token_and_expectation() {
        let e = err("SELECT *\n  FROM Vehicle AS v\n  WHERE v.VIN = = 'x'");
        assert_eq!(
            (e.pos, e.token.as_str()),
            (
                Pos {
                    line: 3,
                    column: 17
                },
                "="
            )
        );
        assert_eq!(
            e.to_string(),
            "line 3, column 17: expected an expression, found `=`"
        );
        let e = err("SELECT *\r\n\tFORM t");
        assert_eq!(
            e.to_string(),
            "line 2, column 2: expected FROM or a statement end after the SELECT list, found `FORM`"
        );
        let e = err("DELETE FROM WHERE x = 1");
        assert_eq!(
            e.to_string(),
            "line 1, column 13: expected a table name, found `WHERE`"
        );
        let e = err("SELECT * FROM t WHERE");
        assert_eq!((e.pos.column, e.token.as_str()), (22, "end of input"));
        assert_eq!(e.message, "expected an expression, found end of input");
        let e = err("SELEKT 1");
        assert_eq!(
            e.message,
            "expected a statement (SELECT, INSERT, UPDATE, DELETE, FROM, CREATE, DROP or EXPLAIN), found `SELEKT`"
        );
        for text in ["", "  ", ";", "SELECT 1;;", "-- nothing", "SELECT 1; ;"] {
            assert!(
                err(text).message.starts_with("expected a statement"),
                "{text:?}"
            );
        }
        let e = err(&format!("SELECT * FROM t WHERE x = 'é{}", "y".repeat(100)));
        assert_eq!((e.pos.column, e.token.chars().count()), (27, 40));
        assert!(e.message.starts_with("unterminated string literal"), "{e}");
        let cases = [
            ("SELECT 1 #", "unexpected character `#`"),
            ("SELECT 1 /* open", "unterminated comment: `*/` is missing"),
            ("SELECT 1abc", "malformed number `1abc`"),
            ("SELECT @1", "expected a name after `@`"),
            ("SELECT \"\"", "a quoted identifier cannot be empty"),
            (
                "CREATE INDEX ON t (a[x])",
                "expected an integer index, found `x`",
            ),
            (
                "SELECT * FROM t ORDER a",
                "expected BY after ORDER, found `a`",
            ),
            (
                "SELECT * FROM t LIMIT 1 WHERE x",
                "expected OFFSET or a statement end after LIMIT, found `WHERE`",
            ),
            (
                "SELECT * FROM a LEFT JOIN b",
                "expected ON after LEFT JOIN's source, found end of input",
            ),
            (
                "SELECT * FROM _ql_committed_",
                "`_ql_committed_` needs a table name after it",
            ),
            (
                "SELECT * FROM t AS SELECT",
                "expected a name after AS, found `SELECT`",
            ),
            (
                "SELECT a FROM t x y",
                "expected WHERE, ORDER BY, LIMIT, OFFSET or a statement end after the FROM clause, found `y`",
            ),
            (
                "UPDATE t WHERE a = 1",
                "expected SET, REMOVE or INSERT INTO after the UPDATE target, found `WHERE`",
            ),
            (
                "FROM t WHERE a = 1",
                "expected SET, REMOVE or INSERT INTO after the WHERE clause, found end of input",
            ),
            (
                "INSERT INTO t {'a': 1}",
                "expected VALUE, `<<` or `?` after the table name, found `{`",
            ),
            (
                "SELECT COUNT(a, b)",
                "expected `)` after COUNT's argument, found `,`",
            ),
            ("SELECT f(a b)", "expected `,` or `)` in f(...), found `b`"),
            ("SELECT CASE END", "expected WHEN in CASE, found `END`"),
            ("SELECT [1, 2", "expected `,` or `]`, found end of input"),
            (
                "SELECT {'a' 1}",
                "expected `:` after the struct key, found `1`",
            ),
            (
                "SELECT x IS 1",
                "expected NULL or MISSING after IS, found `1`",
            ),
            (
                "DROP INDEX \"i\" ON t WITH (a",
                "expected `)` closing WITH (...), found end of input",
            ),
            (
                "SELECT 1 SELECT 2",
                "expected FROM or a statement end after the SELECT list, found `SELECT`",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(err(text).message, message, "{text}");
        }
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let cases = [
            (
                "SELECT a, COUNT(*) FROM t GROUP BY a",
                "GROUP BY is not supported",
            ),
            (
                "SELECT * FROM t WHERE x HAVING y",
                "HAVING is not supported",
            ),
            (
                "SELECT * FROM t UNION SELECT * FROM u",
                "UNION is not supported",
            ),
            (
                "SELECT * FROM t ORDER BY a except SELECT 1",
                "EXCEPT is not supported",
            ),
            ("SELECT * FROM t LET x = 1", "LET is not supported"),
            ("PIVOT v AT k FROM t", "PIVOT is not supported"),
            ("SELECT * FROM UNPIVOT t", "UNPIVOT is not supported"),
            (
                "SELECT * FROM a RIGHT JOIN b ON x",
                "RIGHT [OUTER] JOIN is not supported",
            ),
            (
                "SELECT x.* FROM t AS x",
                "`x.*` projections are not supported",
            ),
            (
                "SELECT * FROM t WHERE x IN (SELECT y FROM u)",
                "subqueries are not supported",
            ),
            (
                "SELECT * FROM (SELECT * FROM u)",
                "subqueries are not supported",
            ),
            (
                "SELECT * FROM t WHERE EXISTS (SELECT * FROM u)",
                "subqueries are not supported",
            ),
            (
                "INSERT INTO t (a, b) VALUES (1, 2)",
                "use INSERT INTO t VALUE {...} (PartiQL); column lists and VALUES are not supported",
            ),
            (
                "INSERT INTO t VALUES (1, 2)",
                "use INSERT INTO t VALUE {...} (PartiQL); column lists and VALUES are not supported",
            ),
            (
                "CREATE TABLE t WITH (aws_tags = `{'k': 'v'}`)",
                "CREATE TABLE ... WITH (tags) is not supported",
            ),
            (
                "SELECT TRIM(LEADING 'x' FROM s)",
                "TRIM with BOTH, LEADING or TRAILING is not supported",
            ),
            (
                "SELECT `{'k': 'v'}`",
                "Ion literal `{'k': 'v'}` is not supported: use a JSON value or a timestamp",
            ),
            (
                "SELECT `abc`",
                "Ion literal `abc` is not supported: use a JSON value or a timestamp",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(err(text).message, message, "{text}");
        }
    }

    #[test]
    fn numbers_beyond_doubles_are_refused() {
        let too_large = "is larger than 2^53, which JSON doubles cannot hold exactly";
        let e = err("SELECT 9007199254740993");
        assert_eq!(
            e.message,
            format!("integer literal 9007199254740993 {too_large}")
        );
        assert_eq!((e.pos.column, e.token.as_str()), (8, "9007199254740993"));
        for text in [
            "SELECT 123456789012345678901234567890".to_owned(),
            "SELECT -9007199254740993".to_owned(),
            "SELECT `[18446744073709551615]`".to_owned(),
            "SELECT `{\"a\": -9007199254740993}`".to_owned(),
            format!("SELECT {}", "9".repeat(10_000)),
        ] {
            let e = err(&text);
            assert!(e.message.ends_with(too_large), "{e}");
            assert!(e.token.chars().count() <= 40, "{e:?}");
        }
        assert_eq!(
            err("SELECT 1e400").message,
            "number literal 1e400 is out of range"
        );
        let fine = parse_one("SELECT 1e-400, 1.8e19");
        assert_eq!(show(&fine), "SELECT 0.0, 1.8e+19");
    }

    #[test]
    fn deep_nesting_is_an_error_not_an_overflow() {
        let n = 10_000;
        for text in [
            format!("SELECT {}", "(".repeat(n)),
            format!("SELECT {}1{}", "[".repeat(n), "]".repeat(n)),
            format!("SELECT {}", "{'a': ".repeat(n)),
            format!("SELECT {}", "<<".repeat(n)),
            format!("SELECT {}1", "- ".repeat(n)),
            format!("SELECT {}1", "NOT ".repeat(n)),
            format!("SELECT x{}", ".y".repeat(n)),
            format!("SELECT x{}", "[0]".repeat(n)),
            format!("SELECT 1{}", " + 1".repeat(n)),
            format!("SELECT {}", "f(".repeat(n)),
            format!("SELECT {}", "CAST(".repeat(n)),
            format!("SELECT {}", "CASE WHEN ".repeat(n)),
            format!("{}SELECT 1", "EXPLAIN ".repeat(n)),
        ] {
            let e = err(&text);
            assert_eq!(
                e.message,
                "the statement nests deeper than 128 levels",
                "{}",
                &text[..40]
            );
        }
        // Every kind of nesting up to the limit parses, within a default thread stack of
        // 2 MiB (tokio's workers, spawned threads) even unoptimized: measured at most about
        // 900 KiB in debug builds (CASE) and 400 KiB in release builds.
        let at_limit = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let n = MAX_DEPTH;
                let deep = |open: &str, close: &str, times| {
                    format!("SELECT {}1{}", open.repeat(times), close.repeat(times))
                };
                let texts = [
                    deep("(", ")", n),
                    deep("[", "]", n),
                    deep("<<", ">>", n),
                    deep("{'a': ", "}", n),
                    deep("f(", ")", n),
                    deep("COUNT(", ")", n),
                    deep("CAST(", " AS int)", n),
                    deep("CASE WHEN ", " THEN 1 END", n),
                    deep("x[", "]", n / 2),
                    deep("1 + (", ")", n / 2),
                    deep("a LIKE (", ")", n / 2),
                    deep("NOT ", "", n),
                    deep("- ", "", n),
                    format!("{}SELECT 1", "EXPLAIN ".repeat(n)),
                ];
                let failed = texts.iter().filter(|text| parse(text).is_err());
                failed
                    .map(|text| text.chars().take(30).collect())
                    .collect::<Vec<String>>()
            })
            .expect("spawns")
            .join()
            .expect("no overflow");
        assert_eq!(at_limit, Vec::<String>::new());
    }

    /// A deterministic generator (xorshift64*), so that failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let n = u64::try_from(n.max(1)).expect("fits");
            usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n).expect("fits")
        }
    }

    #[test]
    fn random_and_mutated_text_never_panics() {
        let seeds = [
            "SELECT v.VIN FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN WHERE r.Owners.PrimaryOwner.PersonId = ?",
            "SELECT * FROM history(Vehicle, `2019-06-05T00:00:00Z`, `2019-06-05T23:59:59Z`) AS h",
            "FROM VehicleRegistration AS r WHERE r.VIN = ? INSERT INTO r.Owners.SecondaryOwners VALUE { 'PersonId' : ? }",
            "INSERT INTO Person << {'FirstName': 'Raul', 'LastName': 'Lewis'}, {'FirstName': 'Brent'} >>",
            "DROP INDEX \"VIN\" ON VehicleRegistration WITH (purge = true); CREATE INDEX ON t (a[1].b)",
            "SELECT DISTINCT CAST(a AS INT), CASE x WHEN 1 THEN 'a' END FROM t, t.l AS e AT i WHERE a NOT BETWEEN -1 AND +2.5e3 ORDER BY a DESC NULLS FIRST LIMIT 1 OFFSET 2",
            "UPDATE t AS x BY id SET x.a[0] = 'it''s' || \"q\" REMOVE x.b WHERE x.c IS NOT NULL /* c */ -- d",
        ];
        let pieces = [
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "<<",
            ">>",
            "'",
            "\"",
            "`",
            "?",
            ",",
            ".",
            ":",
            ";",
            "/*",
            "--",
            "\n",
            "é",
            "@",
            "-",
            "NOT",
            "SELECT",
            "FROM",
            "AS",
            "AT",
            "BY",
            "WHERE",
            "AND",
            "IN",
            "IS",
            "BETWEEN",
            "JOIN",
            "ON",
            "VALUE",
            "99999999999999999999",
            "1e999",
            ".5",
            "`{\"a\":1}`",
            "x",
            "COUNT(",
            "history(",
            "_ql_committed_",
            "CASE",
            "END",
            "*",
            "\u{1F600}",
            "\t",
            "=",
            "\r",
            "\0",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0;
        for round in 0..4000 {
            let mut chars: Vec<char> = if round % 4 == 0 {
                let count = rng.below(60);
                (0..count)
                    .flat_map(|_| {
                        format!("{} ", pieces[rng.below(pieces.len())])
                            .chars()
                            .collect::<Vec<_>>()
                    })
                    .collect()
            } else {
                seeds[rng.below(seeds.len())].chars().collect()
            };
            for _ in 0..=rng.below(4) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 => drop(chars.drain(at..(at + rng.below(8)).min(chars.len()))),
                    1 => drop(chars.splice(at..at, pieces[rng.below(pieces.len())].chars())),
                    2 => chars.truncate(at),
                    _ => {
                        let other = rng.below(chars.len());
                        if at < chars.len() {
                            chars.swap(at, other);
                        }
                    }
                }
            }
            let text: String = chars.into_iter().collect();
            match parse(&text) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    assert!(e.pos.line >= 1 && e.pos.column >= 1, "{text:?}: {e:?}");
                    assert!(
                        e.token.chars().count() <= 40 && !e.message.is_empty(),
                        "{text:?}: {e:?}"
                    );
                }
            }
        }
        assert!(
            parsed > 100,
            "only {parsed} mutated texts parsed: the mutations are too coarse"
        );
    }
}
