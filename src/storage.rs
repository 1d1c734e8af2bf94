//! The redb layout of one ledger: table definitions and the few typed reads shared by the
//! sequencer (inside its write transaction) and the read path (inside read transactions).
//!
//! Each ledger is one redb file. Integer keys are redb `u64`s (fixed-width, ordered
//! numerically); composite keys are redb tuples, which order field by field, so a range
//! over `(table, id, ..)` lists one document's revisions in version order. docs/FORMAT.md
//! documents every table.
//!
//! Nothing here decides policy; it only reads and writes what the engine tells it to.

use graven_verify::{Hash, HashReader};
use redb::{ReadableTable, TableDefinition};

/// Settings and counters, by name (see the `META_*` keys).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Journal entries (leaf data) by journal index.
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Canonical JSON bodies by journal index; no row for deletes.
pub const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// Stored tree hashes by stored-hash index (graven_verify::tree::stored_hash_index).
pub const HASHES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("hashes");
/// Current state of every document ever inserted: (table, id) -> (version, index, live).
pub const DOCS: TableDefinition<(&str, &str), (u64, u64, bool)> = TableDefinition::new("docs");
/// Every revision: (table, id, version) -> journal index.
pub const REVISIONS: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("revisions");
/// User tables: name -> (created micros, active, live documents).
pub const TABLES: TableDefinition<&str, (u64, bool, u64)> = TableDefinition::new("tables");
/// Idempotency keys: key -> the stored receipt (JSON, see `engine::StoredReceipt`).
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// Storage layout version (u32, big-endian). Bumped on any incompatible change.
pub const META_FORMAT: &str = "format";
/// The checkpoint origin and key name (UTF-8).
pub const META_ORIGIN: &str = "origin";
/// Creation time, microseconds since the Unix epoch (u64).
pub const META_CREATED: &str = "created_micros";
/// Deletion protection: one byte, 1 on, 0 off.
pub const META_PROTECTION: &str = "deletion_protection";
/// Number of journal entries, the tree size (u64).
pub const META_SIZE: &str = "size";
/// The next transaction id (u64).
pub const META_NEXT_TX: &str = "next_tx";
/// The latest commit time (u64), kept so commit times never go backwards.
pub const META_LAST_COMMIT: &str = "last_commit_micros";
/// The signed checkpoint note of the current size (UTF-8).
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

/// Stored tree hashes read through any redb table handle.
pub struct StoredHashes<'a, T>(pub &'a T);

impl<T: ReadableTable<u64, [u8; 32]>> HashReader for StoredHashes<'_, T> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        indexes
            .iter()
            .map(|&i| match self.0.get(i)? {
                Some(h) => Ok(Hash(h.value())),
                None => Err(format!("stored hash {i} is missing").into()),
            })
            .collect()
    }
}
