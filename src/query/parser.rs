//! The parser: statement text to [`super::ast::Statement`]s (being written).
