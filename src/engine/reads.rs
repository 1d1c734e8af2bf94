//! What a transaction of statements read, so that the sequencer can commit it only if none
//! of it changed since (optimistic concurrency, serializable: a revision that would have
//! joined what a `WHERE` matched is a change too).
//!
//! A statement reads documents by id, whole tables (a scan, `history()`), and ranges of
//! an index. The sequencer looks at every revision committed after the snapshot the
//! statements ran on ([`ReadSet::base`]): one of a document read, of a table scanned, or
//! whose new value is in a range read (a document that left the range was read, so it is
//! a document read) conflicts, and the transaction is ABORTED, writing nothing.

use std::collections::HashSet;

use crate::model::PathStep;
use crate::storage::{ValueRange, encode_value, value_at};

/// Most revisions committed since a transaction's snapshot that the sequencer looks
/// through; past it, the transaction is aborted (its snapshot is too old to check).
pub const MAX_REVISIONS_SINCE: u64 = 100_000;

/// What a transaction read.
#[derive(Debug, Clone, Default)]
pub struct ReadSet {
    /// The journal size of the snapshot the statements ran on.
    pub base: u64,
    /// Documents read, by (table, id).
    pub docs: HashSet<(String, String)>,
    /// Tables read whole.
    pub tables: HashSet<String>,
    /// Index ranges read.
    pub ranges: Vec<RangeRead>,
}

/// A range of one index read.
#[derive(Debug, Clone)]
pub struct RangeRead {
    /// The table.
    pub table: String,
    /// The indexed path.
    pub path: Vec<PathStep>,
    /// The values read.
    pub range: ValueRange,
}

impl ReadSet {
    /// Why a revision of document `id` of `table` with `body` (canonical JSON, empty for a
    /// delete) conflicts with what was read, if it does.
    pub fn conflict(&self, table: &str, id: &str, body: &[u8]) -> Option<String> {
        if self.docs.contains(&(table.to_owned(), id.to_owned())) {
            return Some("it was read by the transaction".into());
        }
        if self.tables.contains(table) {
            return Some(format!(
                "the transaction read all of table {}",
                crate::error::Quote(table)
            ));
        }
        let ranges: Vec<&RangeRead> = self.ranges.iter().filter(|r| r.table == table).collect();
        if ranges.is_empty() || body.is_empty() {
            return None;
        }
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        ranges.into_iter().find_map(|r| {
            let value = encode_value(value_at(&doc, &r.path)?)?;
            r.range.contains(&value).then(|| {
                format!(
                    "its {} is now among the values the transaction looked up",
                    crate::model::path_text(&r.path)
                )
            })
        })
    }
}
