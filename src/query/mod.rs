//! Queries: PartiQL statements as Amazon QLDB accepted them (docs/QUERY.md).
//!
//! * [`ast`]: the statements, as parsed.
//! * [`parser`]: text to statements, with errors that give line, column and token.

pub mod ast;
pub mod parser;
