//! The redb layout of one ledger: table definitions, value encodings, and the typed reads
//! shared by the sequencer (inside its write transaction) and the read path (inside read
//! transactions).
//!
//! Each ledger is one redb file. Integer keys are redb `u64`s (fixed width, numeric order);
//! composite keys are redb tuples, ordered field by field. The layout keeps what one commit
//! writes on as few pages as possible, because the cost of a durable commit grows with the
//! number of pages it dirties: a leaf's entry and the tree hashes it creates share one row,
//! appended at the right edge; a document's current state and its revisions share one
//! table, side by side. docs/FORMAT.md documents every table.
//!
//! Nothing here decides policy; it only reads and writes what the engine tells it to.

use graven_verify::{Hash, HashReader, split_stored_hash_index};
use redb::{ReadableTable, TableDefinition};

/// Settings and the latest checkpoint, by name (see the `META_*` keys).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One row per journal entry, by journal index: see [`encode_leaf`].
pub const LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("leaves");
/// Canonical JSON bodies by journal index; no row for deletes.
pub const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// Documents: `(table, id, version)` -> `(version, journal index, live)` for every revision,
/// and `(table, id, CURRENT)` -> the same for the current revision.
pub const DOCS: TableDefinition<(&str, &str, u64), (u64, u64, bool)> = TableDefinition::new("docs");
/// User tables: name -> (created micros, active).
pub const TABLES: TableDefinition<&str, (u64, bool)> = TableDefinition::new("tables");
/// Idempotency keys: key -> the stored receipt (JSON, see the sequencer's `StoredReceipt`).
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// The version slot of a document's current-state row in [`DOCS`]: it sorts after every
/// revision of the document.
pub const CURRENT: u64 = u64::MAX;

/// Storage layout version (u32, big-endian). Bumped on any incompatible change.
pub const META_FORMAT: &str = "format";
/// The checkpoint origin and key name (UTF-8).
pub const META_ORIGIN: &str = "origin";
/// Creation time, microseconds since the Unix epoch (u64).
pub const META_CREATED: &str = "created_micros";
/// Deletion protection: one byte, 1 on, 0 off.
pub const META_PROTECTION: &str = "deletion_protection";
/// The signed checkpoint of the journal's current size (UTF-8 note text).
pub const META_CHECKPOINT: &str = "checkpoint";

/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Decodes a big-endian u64 meta value.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a u64 meta value, 0 when absent.
pub fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, redb::StorageError> {
    Ok(meta
        .get(key)?
        .and_then(|v| decode_u64(v.value()))
        .unwrap_or(0))
}

/// Reads a UTF-8 meta value, empty when absent.
pub fn meta_string(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<String, redb::StorageError> {
    Ok(meta
        .get(key)?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned())
        .unwrap_or_default())
}

/// A [`LEAVES`] row: `u32 BE entry length || entry || hashes`, where the hashes are the
/// ones appending this leaf stores (graven_verify::CompactRange::append_stored): the leaf
/// hash, then the node of each subtree the leaf completes, lowest level first.
pub fn encode_leaf(entry: &[u8], hashes: &[Hash]) -> Vec<u8> {
    let mut row = Vec::with_capacity(4 + entry.len() + 32 * hashes.len());
    row.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    row.extend_from_slice(entry);
    for h in hashes {
        row.extend_from_slice(&h.0);
    }
    row
}

/// Splits a [`LEAVES`] row into the entry and its stored hashes; `None` if malformed.
pub fn decode_leaf(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(row.get(..4)?.try_into().ok()?) as usize;
    let entry = row.get(4..4 + len)?;
    let hashes = row.get(4 + len..)?;
    (!hashes.is_empty() && hashes.len() % 32 == 0).then_some((entry, hashes))
}

/// Stored tree hashes read from [`LEAVES`] rows through any redb table handle.
pub struct StoredHashes<'a, T>(pub &'a T);

impl<T: ReadableTable<u64, &'static [u8]>> HashReader for StoredHashes<'_, T> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        indexes
            .iter()
            .map(|&i| {
                let (record, level) = split_stored_hash_index(i);
                let row = self
                    .0
                    .get(record)?
                    .ok_or_else(|| format!("journal row {record} is missing"))?;
                let (_, hashes) = decode_leaf(row.value())
                    .ok_or_else(|| format!("journal row {record} is malformed"))?;
                let at = usize::from(level) * 32;
                let hash = hashes
                    .get(at..at + 32)
                    .ok_or_else(|| format!("journal row {record} lacks its level {level} hash"))?;
                Ok(Hash(hash.try_into().map_err(|_| "short hash")?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graven_verify::leaf_hash;

    #[test]
    fn leaf_rows_round_trip_and_reject_garbage() {
        let hashes = [leaf_hash(b"a"), leaf_hash(b"b")];
        let row = encode_leaf(b"entry", &hashes);
        let (entry, stored) = decode_leaf(&row).expect("decodes");
        assert_eq!(entry, b"entry");
        assert_eq!(stored.len(), 64);
        assert_eq!(&stored[32..], &hashes[1].0);
        assert!(decode_leaf(&row[..row.len() - 1]).is_none());
        assert!(decode_leaf(&encode_leaf(b"entry", &[])).is_none());
        assert!(decode_leaf(&[0, 0, 0]).is_none());
        assert!(decode_leaf(&[0, 0, 1, 0]).is_none());
    }
}
