//! The lexer: statement text to [`Token`]s, each with its position, for the parser
//! ([`super::parser`]).
//!
//! Numbers and backquoted Ion literals become JSON values here; when one cannot (an integer
//! beyond 2^53, an Ion value that is neither JSON nor a timestamp) the token carries the
//! reason, and the parser reports it only when it reads the token as a value. That way
//! `CREATE TABLE t WITH (aws_tags = `{'k': 'v'}`)` is refused for its `WITH` clause, and
//! the content of `DROP INDEX ... WITH (...)` can be skipped whatever it holds.

use serde_json::{Number, Value};

use super::ast::Pos;
use super::parser::ParseError;

/// The largest integer magnitude a JSON double holds exactly.
pub(crate) const MAX_EXACT_INT: u64 = 1 << 53;

/// The most characters of a token an error quotes.
const SNIPPET_CHARS: usize = 40;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An unquoted identifier or keyword, as written.
    Word(String),
    /// A double-quoted identifier, unescaped: never a keyword.
    Quoted(String),
    /// `@name` or `@"name"`: a variable name, never a keyword.
    At(String),
    /// A single-quoted string, unescaped.
    Str(String),
    /// A number or backquoted Ion literal as a JSON value, or why it cannot be one.
    Value(Result<Value, String>),
    /// `?`.
    Param,
    /// An operator or punctuation mark, as written (`<=`, `(`, `<<`, ...).
    Sym(&'static str),
    /// The end of the text.
    Eof,
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where it starts.
    pub pos: Pos,
    /// Its byte range in the text (empty for [`Tok::Eof`]).
    pub start: usize,
    /// The end of that range.
    pub end: usize,
}

impl Token {
    /// Whether this is the unquoted keyword `kw` (any case).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// Whether this is the operator or punctuation mark `sym`.
    pub fn is_sym(&self, sym: &str) -> bool {
        matches!(self.tok, Tok::Sym(s) if s == sym)
    }
}

/// Operators and punctuation, longest first so that `<=` is not read as `<` then `=`.
/// `<<` and `>>` are single tokens: they open and close bags.
const SYMBOLS: [&str; 25] = [
    "<>", "<=", ">=", "!=", "||", "<<", ">>", "=", "<", ">", "+", "-", "*", "/", "%", ".", ",",
    "(", ")", "[", "]", "{", "}", ":", ";",
];

/// At most [`SNIPPET_CHARS`] characters of `text`, for an error message.
pub(crate) fn snippet(text: &str) -> String {
    if text.chars().count() <= SNIPPET_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(SNIPPET_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// Splits `src` into tokens; the last is always [`Tok::Eof`].
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        src,
        off: 0,
        line: 1,
        column: 1,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks()?;
        let (start, pos) = (lexer.off, lexer.pos());
        let Some(c) = lexer.peek() else {
            tokens.push(Token {
                tok: Tok::Eof,
                pos,
                start,
                end: start,
            });
            return Ok(tokens);
        };
        let tok = lexer.token(c, start, pos)?;
        tokens.push(Token {
            tok,
            pos,
            start,
            end: lexer.off,
        });
    }
}

/// A cursor over the text that counts lines and columns.
struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character (always on a character boundary).
    off: usize,
    line: u32,
    column: u32,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn rest(&self) -> &str {
        self.src.get(self.off..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.off += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    fn eat_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
    }

    /// The text from byte `start` to here.
    fn since(&self, start: usize) -> &str {
        self.src.get(start..self.off).unwrap_or("")
    }

    fn error(&self, pos: Pos, token: &str, message: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            token: snippet(token),
            message: message.into(),
        }
    }

    /// Skips whitespace and comments (`-- to end of line`, `/* ... */`).
    fn skip_blanks(&mut self) -> Result<(), ParseError> {
        loop {
            self.eat_while(char::is_whitespace);
            let rest = self.rest();
            if rest.starts_with("--") {
                self.eat_while(|c| c != '\n');
            } else if rest.starts_with("/*") {
                let (start, pos) = (self.off, self.pos());
                self.bump();
                self.bump();
                while !self.rest().starts_with("*/") {
                    if self.bump().is_none() {
                        let text = self.src.get(start..).unwrap_or("");
                        return Err(self.error(pos, text, "unterminated comment: `*/` is missing"));
                    }
                }
                self.bump();
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    /// Reads the token that starts with `c` at byte `start`.
    fn token(&mut self, c: char, start: usize, pos: Pos) -> Result<Tok, ParseError> {
        if is_ident_start(c) {
            self.eat_while(is_ident_char);
            return Ok(Tok::Word(self.since(start).to_owned()));
        }
        if c.is_ascii_digit() || (c == '.' && self.peek2().is_some_and(|d| d.is_ascii_digit())) {
            return self.number(start, pos);
        }
        match c {
            '\'' => self
                .quoted('\'', start, pos, "string literal")
                .map(Tok::Str),
            '"' => self.quoted_ident(start, pos).map(Tok::Quoted),
            '`' => self.ion(start, pos),
            '?' => {
                self.bump();
                Ok(Tok::Param)
            }
            '@' => {
                self.bump();
                match self.peek() {
                    Some('"') => self.quoted_ident(start, pos).map(Tok::At),
                    Some(c) if is_ident_start(c) => {
                        let name_start = self.off;
                        self.eat_while(is_ident_char);
                        Ok(Tok::At(self.since(name_start).to_owned()))
                    }
                    _ => Err(self.error(pos, "@", "expected a name after `@`")),
                }
            }
            _ => {
                let rest = self.rest();
                let Some(sym) = SYMBOLS.iter().copied().find(|s| rest.starts_with(s)) else {
                    return Err(self.error(
                        pos,
                        &c.to_string(),
                        format!("unexpected character `{c}`"),
                    ));
                };
                for _ in 0..sym.len() {
                    self.bump();
                }
                Ok(Tok::Sym(sym))
            }
        }
    }

    /// `1`, `2.5`, `.5`, `1e3`, `1.5E-2`.
    fn number(&mut self, start: usize, pos: Pos) -> Result<Tok, ParseError> {
        self.eat_while(|c| c.is_ascii_digit());
        let mut float = false;
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.bump();
            self.eat_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mut after = self.rest().chars().skip(1);
            let exponent = match after.next() {
                Some('+' | '-') => after.next().is_some_and(|c| c.is_ascii_digit()),
                Some(c) => c.is_ascii_digit(),
                None => false,
            };
            if exponent {
                float = true;
                self.bump();
                if matches!(self.peek(), Some('+' | '-')) {
                    self.bump();
                }
                self.eat_while(|c| c.is_ascii_digit());
            }
        }
        if self.peek().is_some_and(is_ident_char) {
            self.eat_while(is_ident_char);
            let text = self.since(start);
            return Err(self.error(pos, text, format!("malformed number `{}`", snippet(text))));
        }
        Ok(Tok::Value(number_value(self.since(start), float)))
    }

    /// A `quote`-delimited text where a doubled quote stands for one; returns it unescaped.
    fn quoted(
        &mut self,
        quote: char,
        start: usize,
        pos: Pos,
        what: &str,
    ) -> Result<String, ParseError> {
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                Some(c) if c == quote => {
                    if self.peek() != Some(quote) {
                        return Ok(text);
                    }
                    self.bump();
                    text.push(quote);
                }
                Some(c) => text.push(c),
                None => {
                    let token = self.src.get(start..).unwrap_or("");
                    return Err(self.error(
                        pos,
                        token,
                        format!("unterminated {what}: `{quote}` is missing"),
                    ));
                }
            }
        }
    }

    /// `"name"`, with `""` for a quote; not empty.
    fn quoted_ident(&mut self, start: usize, pos: Pos) -> Result<String, ParseError> {
        let name = self.quoted('"', start, pos, "quoted identifier")?;
        if name.is_empty() {
            return Err(self.error(
                pos,
                self.since(start),
                "a quoted identifier cannot be empty",
            ));
        }
        Ok(name)
    }

    /// `` `...` ``: a JSON value or a timestamp.
    fn ion(&mut self, start: usize, pos: Pos) -> Result<Tok, ParseError> {
        self.bump();
        let content_start = self.off;
        self.eat_while(|c| c != '`');
        let content = self.since(content_start).to_owned();
        if self.bump().is_none() {
            let token = self.since(start);
            return Err(self.error(pos, token, "unterminated Ion literal: '`' is missing"));
        }
        Ok(Tok::Value(ion_value(&content)))
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// The value of a number's text (digits only unless `float`).
fn number_value(text: &str, float: bool) -> Result<Value, String> {
    if !float {
        return match text.parse::<u64>() {
            Ok(n) if n <= MAX_EXACT_INT => Ok(Value::from(n)),
            _ => Err(too_large(text)),
        };
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Ok(Value::Number(n)),
        None => Err(format!("number literal {} is out of range", snippet(text))),
    }
}

fn too_large(text: &str) -> String {
    format!(
        "integer literal {} is larger than 2^53, which JSON doubles cannot hold exactly",
        snippet(text)
    )
}

/// The value of an Ion literal's content: JSON if it parses as such, else a timestamp's
/// text as a string.
fn ion_value(content: &str) -> Result<Value, String> {
    let content = content.trim();
    if let Ok(value) = serde_json::from_str::<Value>(content) {
        check_exact(&value)?;
        return Ok(value);
    }
    if looks_like_timestamp(content) {
        return Ok(Value::String(content.to_owned()));
    }
    Err(format!(
        "Ion literal `{}` is not supported: use a JSON value or a timestamp",
        snippet(content)
    ))
}

/// Refuses integers a double cannot hold exactly, anywhere in `value` (without recursion).
fn check_exact(value: &Value) -> Result<(), String> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) => {
                let magnitude = n.as_u64().or_else(|| n.as_i64().map(i64::unsigned_abs));
                if magnitude.is_some_and(|m| m > MAX_EXACT_INT) {
                    return Err(too_large(&n.to_string()));
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(members) => stack.extend(members.values()),
            _ => {}
        }
    }
    Ok(())
}

/// `2019-06-05T00:00:00Z`, `2019-06-05T`, `2019T`: four digits then `-` or `T`, and only
/// characters a timestamp uses.
fn looks_like_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 5
        && bytes.iter().take(4).all(u8::is_ascii_digit)
        && matches!(bytes.get(4), Some(b'-' | b'T'))
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "-:.+TZtz".contains(c))
}
