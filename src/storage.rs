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

use graven_verify::{CompactRange, Hash, HashReader, leaf_hash, split_stored_hash_index};
use redb::{ReadableTable, Table, TableDefinition};

/// Settings and the latest checkpoint, by name (see the `META_*` keys).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One row per journal entry, by journal index: the entry, the tree hashes it creates and
/// the document body; see [`encode_leaf`].
pub const LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("leaves");
/// Documents: `(table, id, CURRENT)` -> `(version, journal index, live)` of the current
/// revision, and `(table, id, version)` -> the same for every earlier revision. (The
/// current revision has no row of its own version: an insert writes one row, not two.)
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

/// The layout version this build writes and reads (docs/FORMAT.md §9 has the history).
pub const FORMAT_VERSION: u32 = 2;

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

/// How many tree hashes appending leaf `index` stores: the leaf hash and one node per
/// subtree the leaf completes.
pub fn stored_hashes_of(index: u64) -> usize {
    1 + index.trailing_ones() as usize
}

/// A [`LEAVES`] row: `u32 BE entry length || entry || hashes || body`. The hashes are the
/// ones appending this leaf stores (graven_verify::CompactRange::append_stored): the leaf
/// hash, then the node of each subtree the leaf completes, lowest level first,
/// [`stored_hashes_of`]`(index)` of them. The body is the revision's canonical JSON, empty
/// for a delete (a document is an object, so a body is never empty).
/// It is written into `row`, cleared first, so that one buffer serves a whole batch.
pub fn encode_leaf(row: &mut Vec<u8>, entry: &[u8], hashes: &[Hash], body: &[u8]) {
    row.clear();
    row.reserve(4 + entry.len() + 32 * hashes.len() + body.len());
    row.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    row.extend_from_slice(entry);
    for h in hashes {
        row.extend_from_slice(&h.0);
    }
    row.extend_from_slice(body);
}

/// One revision to append with [`append_revision`].
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    /// The encoded journal entry (the leaf's bytes).
    pub entry: &'a [u8],
    /// Its canonical JSON; empty for a delete.
    pub body: &'a [u8],
    /// The document's table and id.
    pub table: &'a str,
    pub id: &'a str,
    /// The entry's version, and whether the document is live after it (not a delete).
    pub version: u64,
    pub live: bool,
    /// The document's CURRENT row before this revision: (version, index, live).
    pub previous: Option<(u64, u64, bool)>,
}

/// Buffers [`append_revision`] reuses from one revision to the next.
#[derive(Debug, Default)]
pub struct RowBuffers {
    row: Vec<u8>,
    hashes: Vec<Hash>,
}

/// Writes `rev` at journal index `range.size()` and returns that index: its [`LEAVES`]
/// row (the entry, the tree hashes it completes, its body), and its [`DOCS`] rows: the
/// revision it replaces gets a row of its own version, and the CURRENT row points at this
/// one. `range` grows by the leaf. The one way revisions are stored: by the sequencer, and
/// by `graven import`.
pub fn append_revision(
    leaves: &mut Table<'_, u64, &'static [u8]>,
    docs: &mut Table<'_, (&'static str, &'static str, u64), (u64, u64, bool)>,
    range: &mut CompactRange,
    buffers: &mut RowBuffers,
    rev: &Revision<'_>,
) -> Result<u64, redb::StorageError> {
    let index = range.size();
    buffers.hashes.clear();
    range.append_stored(leaf_hash(rev.entry), |_, h| buffers.hashes.push(h));
    encode_leaf(&mut buffers.row, rev.entry, &buffers.hashes, rev.body);
    leaves.insert(index, buffers.row.as_slice())?;
    if let Some(old) = rev.previous {
        docs.insert((rev.table, rev.id, old.0), old)?;
    }
    docs.insert((rev.table, rev.id, CURRENT), (rev.version, index, rev.live))?;
    Ok(index)
}

/// A [`LEAVES`] row taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf<'a> {
    /// The journal entry (the leaf's bytes).
    pub entry: &'a [u8],
    /// The stored tree hashes, 32 bytes each.
    pub hashes: &'a [u8],
    /// The body; empty for a delete.
    pub body: &'a [u8],
}

/// Splits the [`LEAVES`] row of leaf `index`; `None` if malformed.
pub fn decode_leaf(index: u64, row: &[u8]) -> Option<Leaf<'_>> {
    let len = u32::from_be_bytes(row.get(..4)?.try_into().ok()?) as usize;
    let entry = row.get(4..4 + len)?;
    let end = 4 + len + 32 * stored_hashes_of(index);
    let hashes = row.get(4 + len..end)?;
    Some(Leaf {
        entry,
        hashes,
        body: row.get(end..)?,
    })
}

/// Reads the stored hash at stored-hash index `i` from a [`LEAVES`] table: its level and
/// the hash.
fn read_stored_hash<T: ReadableTable<u64, &'static [u8]>>(
    table: &T,
    i: u64,
) -> Result<(u8, Hash), Box<dyn std::error::Error + Send + Sync>> {
    let (record, level) = split_stored_hash_index(i);
    let row = table
        .get(record)?
        .ok_or_else(|| format!("journal row {record} is missing"))?;
    let leaf = decode_leaf(record, row.value())
        .ok_or_else(|| format!("journal row {record} is malformed"))?;
    let at = usize::from(level) * 32;
    let hash = leaf
        .hashes
        .get(at..at + 32)
        .ok_or_else(|| format!("journal row {record} lacks its level {level} hash"))?;
    Ok((level, Hash(hash.try_into().map_err(|_| "short hash")?)))
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
            .map(|&i| Ok(read_stored_hash(self.0, i)?.1))
            .collect()
    }
}

/// The lowest level [`UpperHashes`] keeps: subtrees of 16 leaves and more, while they fit.
/// Below it a proof's hashes lie within 15 rows of the leaf, mostly on the leaf's own page.
const UPPER_LEVEL: u8 = 4;
/// Most hashes [`UpperHashes`] keeps (8 MiB of hashes; about 21 MiB in the map). When full
/// it starts again empty.
const UPPER_MAX: usize = 1 << 18;

/// The lowest level cached for a tree of `size` leaves: [`UPPER_LEVEL`], raised until all
/// nodes of that level and above (about `2 * size / 2^level`) fit in [`UPPER_MAX`].
pub fn upper_level(size: u64) -> u8 {
    let mut level = UPPER_LEVEL;
    while level < 63 && (size >> level).saturating_mul(2) > UPPER_MAX as u64 {
        level += 1;
    }
    level
}

/// Tree hashes of large subtrees (level [`upper_level`] and up), kept in memory once read.
///
/// A proof of a random leaf of an n-leaf tree needs about log2(n) stored hashes. The low
/// ones lie in rows near the leaf; the high ones each sit in a different row, far apart,
/// so from storage each costs a B-tree descent to a page that holds little else of use,
/// and together they are more pages than a page cache keeps. There are only about two per 16
/// leaves, every proof wants some, and a stored hash never changes once committed (the
/// journal is append-only, and readers see only committed snapshots), so a copy here can
/// never be stale. Memory: at most [`UPPER_MAX`] hashes (about 21 MiB with the map), which
/// holds levels 4 and up to 2M leaves, 7 and up at 10M, and so on.
#[derive(Debug, Default)]
pub struct UpperHashes(std::sync::Mutex<std::collections::HashMap<u64, Hash>>);

/// Stored tree hashes read through an [`UpperHashes`] cache.
pub struct CachedHashes<'a, T> {
    /// The [`LEAVES`] table of a committed snapshot.
    pub table: &'a T,
    /// The ledger's cache.
    pub cache: &'a UpperHashes,
    /// The snapshot's journal size (it sets the lowest level cached).
    pub size: u64,
}

impl<T: ReadableTable<u64, &'static [u8]>> HashReader for CachedHashes<'_, T> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        let mut found: Vec<Option<Hash>> = {
            let map = self
                .cache
                .0
                .lock()
                .map_err(|_| "hash cache lock poisoned")?;
            indexes.iter().map(|i| map.get(i).copied()).collect()
        };
        let lowest = upper_level(self.size);
        let mut fresh = Vec::new();
        for (slot, &i) in found.iter_mut().zip(indexes) {
            if slot.is_none() {
                let (level, hash) = read_stored_hash(self.table, i)?;
                if level >= lowest {
                    fresh.push((i, hash));
                }
                *slot = Some(hash);
            }
        }
        if !fresh.is_empty() {
            let mut map = self
                .cache
                .0
                .lock()
                .map_err(|_| "hash cache lock poisoned")?;
            if map.len() + fresh.len() > UPPER_MAX {
                map.clear();
            }
            map.extend(fresh);
        }
        Ok(found.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graven_verify::{CompactRange, leaf_hash, prove_inclusion, stored_hash_index};
    use redb::ReadableDatabase as _;

    /// A ledger-shaped `leaves` table of `n` leaves, in a temporary redb file.
    fn journal(n: u64) -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut leaves = txn.open_table(LEAVES).expect("leaves");
            let mut range = CompactRange::new();
            let mut row = Vec::new();
            for i in 0..n {
                let entry = i.to_be_bytes();
                let mut hashes = Vec::new();
                range.append_stored(leaf_hash(&entry), |_, h| hashes.push(h));
                encode_leaf(&mut row, &entry, &hashes, b"{}");
                leaves.insert(i, row.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        (dir, db)
    }

    #[test]
    fn cached_hashes_match_storage_and_keep_only_upper_levels() {
        let (_dir, db) = journal(1024);
        let cache = UpperHashes::default();
        {
            let txn = db.begin_read().expect("read");
            let leaves = txn.open_table(LEAVES).expect("leaves");
            let cached = CachedHashes {
                table: &leaves,
                cache: &cache,
                size: 1024,
            };
            for index in [0, 1, 255, 256, 700, 1023] {
                let a = prove_inclusion(index, 1024, &StoredHashes(&leaves)).expect("proof");
                let b = prove_inclusion(index, 1024, &cached).expect("cached proof");
                assert_eq!(a, b, "leaf {index}");
            }
        }
        // Subtrees of 16 leaves and more were needed: cached; nothing below level 4 is.
        let map = cache.0.lock().expect("lock");
        assert!(!map.is_empty());
        for &i in map.keys() {
            assert!(
                split_stored_hash_index(i).1 >= UPPER_LEVEL,
                "stored index {i}"
            );
        }
        assert_eq!(upper_level(1024), UPPER_LEVEL);
        assert_eq!(upper_level(1 << 21), UPPER_LEVEL); // 2^17 nodes of level 4: all fit
        assert_eq!(upper_level(1 << 22), UPPER_LEVEL + 1);
        assert_eq!(upper_level(10_000_000), 7);
        for size in [1u64 << 30, u64::MAX] {
            assert!((size >> upper_level(size)) * 2 <= UPPER_MAX as u64);
        }
        drop(map);

        // A cached hash is answered from memory: change the row under it and the cache
        // still gives the hash first read (storage is append-only; this only shows the
        // cache is what answers).
        let upper = stored_hash_index(8, 1); // the subtree [256, 512), written by leaf 511
        let before = {
            let txn = db.begin_read().expect("read");
            let leaves = txn.open_table(LEAVES).expect("leaves");
            StoredHashes(&leaves).read_hashes(&[upper]).expect("read")[0]
        };
        assert_eq!(cache.0.lock().expect("lock").get(&upper), Some(&before));
        let txn = db.begin_write().expect("write");
        {
            let mut leaves = txn.open_table(LEAVES).expect("leaves");
            let mut row = leaves.get(511).expect("get").expect("row").value().to_vec();
            let at = 4 + 8 + 8 * 32; // entry length, entry, levels 0 to 7
            row[at] ^= 1;
            leaves.insert(511, row.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        let txn = db.begin_read().expect("read");
        let leaves = txn.open_table(LEAVES).expect("leaves");
        let cached = CachedHashes {
            table: &leaves,
            cache: &cache,
            size: 1024,
        };
        let stored = StoredHashes(&leaves).read_hashes(&[upper]).expect("read")[0];
        assert_ne!(stored, before, "the row was changed");
        assert_eq!(cached.read_hashes(&[upper]).expect("read")[0], before);
    }

    #[test]
    fn leaf_rows_round_trip_and_reject_garbage() {
        let hashes = [leaf_hash(b"a"), leaf_hash(b"b")];
        // Leaf 1 completes the subtree [0, 2): two hashes.
        let mut row = Vec::new();
        encode_leaf(&mut row, b"entry", &hashes, b"{}");
        let leaf = decode_leaf(1, &row).expect("decodes");
        assert_eq!(leaf.entry, b"entry");
        assert_eq!(leaf.hashes.len(), 64);
        assert_eq!(&leaf.hashes[32..], &hashes[1].0);
        assert_eq!(leaf.body, b"{}");
        // Read as leaf 0 (one hash), the second hash is taken for the body: the caller
        // must pass the row's own index.
        assert_eq!(decode_leaf(0, &row).expect("decodes").body.len(), 34);
        let mut delete = Vec::new();
        encode_leaf(&mut delete, b"entry", &hashes[..1], b"");
        assert_eq!(decode_leaf(0, &delete).expect("decodes").body, b"");
        // Too short for its hashes, or for its entry.
        assert!(decode_leaf(1, &delete).is_none());
        assert!(decode_leaf(0, &row[..4 + 5 + 31]).is_none());
        assert!(decode_leaf(0, &[0, 0, 0]).is_none());
        assert!(decode_leaf(0, &[0, 0, 1, 0]).is_none());
    }
}
