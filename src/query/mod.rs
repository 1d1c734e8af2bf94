//! Queries: PartiQL statements as Amazon QLDB accepted them (docs/QUERY.md).
//!
//! * [`ast`]: the statements, as parsed.
//! * [`parser`]: text to statements, with errors that give line, column and token.
//! * [`eval`]: expressions over JSON values, with PartiQL's MISSING and three-valued
//!   logic.
//! * [`exec`]: plans (scan or index, per source) and running them over a [`exec::Data`].

pub mod ast;
pub mod eval;
pub mod exec;
mod lexer;
pub mod parser;
