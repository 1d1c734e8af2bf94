//! The Merkle tree of RFC 6962 / RFC 9162 §2.1: stored hashes, tree hashes, and inclusion
//! and consistency proofs, each proved from storage and checked offline, in symmetric pairs.
//!
//! # Storage model
//!
//! A log of `n` records stores the hash of every *complete* subtree: the leaf hashes and,
//! for every aligned power-of-two range of leaves, the node over it. Appending a record adds
//! its leaf hash plus one hash per subtree it completes, about two hashes per record in all.
//! Each stored hash has a linear index ([`stored_hash_index`], the layout of Go's
//! `golang.org/x/mod/sumdb/tlog`) so that the hashes of record `k` all sort before those of
//! record `k + 1`: storage is append-only.
//!
//! Any hash the RFC needs (a tree root, a proof element) is the RFC 6962 hash of a range of
//! leaves, and every such range splits into at most `log2(n) + 1` stored hashes. The provers
//! first work out which stored hashes they need, ask a [`HashReader`] for all of them in one
//! call, then combine them: `O(log n)` reads and memory, whatever the size of the log.
//!
//! # Checking
//!
//! [`check_inclusion`] and [`check_consistency`] are the verification algorithms of
//! RFC 9162 §2.1.3.2 and §2.1.4.2, line by line. A proof that does not prove its claim
//! always yields [`ProofError::Failed`]; questions that make no sense (an index beyond the
//! tree, an old size above the new one) yield [`ProofError::OutOfRange`].

use std::fmt;

use crate::hash::{EMPTY_ROOT, Hash, node_hash};

/// The largest tree size the stored-hash layout supports: `2^62` records (the linear index of
/// a stored hash must fit in a `u64`). Checking proofs has no such limit.
pub const MAX_STORED_SIZE: u64 = 1 << 62;

/// Why a proof was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The proof does not prove the claim: tampered data, wrong root, wrong proof.
    /// Deliberately coarse: every verification failure is this one value.
    Failed,
    /// The question is out of range: an index not below the tree size, an old size above
    /// the new one.
    OutOfRange,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Failed => f.write_str("proof failed"),
            ProofError::OutOfRange => f.write_str("index or size out of range"),
        }
    }
}

impl std::error::Error for ProofError {}

/// Why a proof or a tree hash could not be produced from storage.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProveError {
    /// The index or sizes asked for do not exist in a tree of that size.
    OutOfRange,
    /// The [`HashReader`] failed.
    Read(Box<dyn std::error::Error + Send + Sync>),
    /// The [`HashReader`] returned a different number of hashes than asked for.
    ShortRead {
        /// How many hashes were asked for.
        wanted: usize,
        /// How many came back.
        got: usize,
    },
}

impl fmt::Display for ProveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProveError::OutOfRange => f.write_str("index or size out of range"),
            ProveError::Read(e) => write!(f, "reading stored hashes: {e}"),
            ProveError::ShortRead { wanted, got } => {
                write!(
                    f,
                    "hash reader returned {got} hashes, {wanted} were asked for"
                )
            }
        }
    }
}

impl std::error::Error for ProveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProveError::Read(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A source of stored hashes, addressed by [`stored_hash_index`].
///
/// Implementations MUST return exactly one hash per index, in the order asked. Callers ask
/// for everything they need in a single call, so an implementation backed by a database
/// can serve the batch from one read transaction.
pub trait HashReader {
    /// Reads the stored hashes at `indexes`.
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A slice of every stored hash, in stored-index order, is a [`HashReader`] (for tests and
/// small in-memory trees).
impl HashReader for [Hash] {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i).copied())
                    .ok_or_else(|| format!("no stored hash at index {i}").into())
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, Box<dyn std::error::Error + Send + Sync>> {
        self.as_slice().read_hashes(indexes)
    }
}

/// The linear storage index of the hash of the complete subtree at `level` (0 = leaves)
/// whose leaves are `[n * 2^level, (n + 1) * 2^level)`.
///
/// The layout is sumdb/tlog's: level `L`'s `n`th hash is stored right after level `L + 1`'s
/// `2n + 1`th... so that appending record `k` writes its leaf hash and then the nodes it
/// completes, all after every hash of records before it. Valid for trees of up to
/// [`MAX_STORED_SIZE`] records.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    // Walk down to the rightmost leaf under this node: the node is written right after it.
    let mut leaf = n;
    for _ in 0..level {
        leaf = 2 * leaf + 1;
    }
    // Leaf `k` is preceded by k leaves and by the k/2 + k/4 + ... nodes those completed.
    let mut index = 0;
    let mut k = leaf;
    while k > 0 {
        index += k;
        k >>= 1;
    }
    index + u64::from(level)
}

/// The inverse of [`stored_hash_index`]: the record that wrote the stored hash at `index`,
/// and the hash's level. The hashes record `n` writes are, in order, levels
/// `0..=trailing_ones(n)`; the node at level `l` is the subtree with index `n >> l`.
pub fn split_stored_hash_index(index: u64) -> (u64, u8) {
    // stored_hash_index(0, n) lies in [n, 2n], so the record is at least index / 2.
    let mut record = index / 2;
    let mut first = stored_hash_index(0, record);
    while first > index {
        record -= 1;
        first = stored_hash_index(0, record);
    }
    loop {
        let next = first + 1 + u64::from(record.trailing_ones());
        if next > index {
            break;
        }
        record += 1;
        first = next;
    }
    (record, (index - first) as u8)
}

/// How many hashes a log of `size` records stores.
pub fn stored_hash_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last = size - 1;
    // Everything up to the last leaf hash, then the nodes the last leaf completes.
    stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones())
}

/// A complete subtree: `2^level` leaves starting at leaf `index * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subtree {
    level: u8,
    index: u64,
}

impl Subtree {
    fn stored_index(self) -> u64 {
        stored_hash_index(self.level, self.index)
    }
}

/// The largest power of two strictly below `n` (`n >= 2`): RFC 6962's split point `k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees, left to right, whose RFC 6962 hashes fold into the hash of the
/// leaf range `[lo, hi)`.
///
/// Only ranges that RFC 6962's recursion produces are asked for: `lo` is a multiple of
/// every power of two not above `hi - lo`, so each piece is an aligned power of two.
fn decompose(lo: u64, hi: u64, out: &mut Vec<Subtree>) {
    let mut lo = lo;
    while lo < hi {
        let level = 63 - (hi - lo).leading_zeros() as u8;
        debug_assert_eq!(
            lo % (1 << level),
            0,
            "range not produced by RFC 6962 splitting"
        );
        out.push(Subtree {
            level,
            index: lo >> level,
        });
        lo += 1 << level;
    }
}

/// Folds the hashes of the pieces of one range, left to right, into the range's hash:
/// `node(s1, node(s2, ... node(s_{k-1}, s_k)))`, RFC 6962's recursion unrolled.
fn fold_range(pieces: &[Hash]) -> Hash {
    let mut iter = pieces.iter().rev();
    let Some(last) = iter.next() else {
        return EMPTY_ROOT;
    };
    iter.fold(*last, |right, left| node_hash(left, &right))
}

/// Reads the hashes of `ranges` (each a leaf range `[lo, hi)`) in one batched read and
/// returns one hash per range.
fn range_hashes(ranges: &[(u64, u64)], reader: &impl HashReader) -> Result<Vec<Hash>, ProveError> {
    let mut pieces = Vec::new();
    let mut ends = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        decompose(lo, hi, &mut pieces);
        ends.push(pieces.len());
    }
    let indexes: Vec<u64> = pieces.iter().map(|s| s.stored_index()).collect();
    let hashes = reader.read_hashes(&indexes).map_err(ProveError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(ProveError::ShortRead {
            wanted: indexes.len(),
            got: hashes.len(),
        });
    }
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let h = fold_range(&hashes[start..end]);
            start = end;
            h
        })
        .collect())
}

/// The root hash of the first `size` records (RFC 6962 `MTH(D[size])`), read from storage.
pub fn tree_hash(size: u64, reader: &impl HashReader) -> Result<Hash, ProveError> {
    if size > MAX_STORED_SIZE {
        return Err(ProveError::OutOfRange);
    }
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    Ok(range_hashes(&[(0, size)], reader)?[0])
}

/// The leaf ranges whose hashes make up the inclusion proof of leaf `index` in the tree of
/// `[lo, hi)`: RFC 9162 §2.1.3.1 `PATH(m, D[n])`, sibling of the leaf first.
fn inclusion_ranges(index: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split_point(hi - lo);
    if index < lo + k {
        inclusion_ranges(index, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        inclusion_ranges(index, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// Proves that leaf `index` is in the tree of `size` leaves: the audit path of
/// RFC 9162 §2.1.3.1, from the leaf's sibling up to a child of the root.
pub fn prove_inclusion(
    index: u64,
    size: u64,
    reader: &impl HashReader,
) -> Result<Vec<Hash>, ProveError> {
    if index >= size || size > MAX_STORED_SIZE {
        return Err(ProveError::OutOfRange);
    }
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    range_hashes(&ranges, reader)
}

/// Checks that `leaf` is leaf number `index` of the tree of `size` leaves with root `root`,
/// given its audit path (RFC 9162 §2.1.3.2).
pub fn check_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    leaf: &Hash,
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    // Steps 2 and 3.
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(ProofError::Failed);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    if snode == 0 && r == *root {
        Ok(())
    } else {
        Err(ProofError::Failed)
    }
}

/// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[lo:hi], b)`, as leaf ranges.
fn consistency_ranges(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push((lo, hi));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        consistency_ranges(m, lo, lo + k, complete, out);
        out.push((lo + k, hi));
    } else {
        consistency_ranges(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// Proves that the tree of `old_size` leaves is a prefix of the tree of `new_size` leaves
/// (RFC 9162 §2.1.4.1). The proof is empty when the sizes are equal or `old_size` is 0.
pub fn prove_consistency(
    old_size: u64,
    new_size: u64,
    reader: &impl HashReader,
) -> Result<Vec<Hash>, ProveError> {
    if old_size > new_size || new_size > MAX_STORED_SIZE {
        return Err(ProveError::OutOfRange);
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    consistency_ranges(old_size, 0, new_size, true, &mut ranges);
    range_hashes(&ranges, reader)
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree
/// of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// Two cases the RFC leaves to the caller: equal sizes need an empty proof and equal roots;
/// an old size of 0 (the empty tree, a prefix of every tree) needs an empty proof and the
/// empty root.
pub fn check_consistency(
    proof: &[Hash],
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange);
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Failed)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() && *old_root == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::Failed)
        };
    }
    // Step 1.
    if proof.is_empty() {
        return Err(ProofError::Failed);
    }
    // Step 2: if the old tree is a complete subtree, its root is the proof's first node.
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // Step 3.
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let mut fr = first;
    let mut sr = first;
    // Step 6.
    for c in rest {
        if snode == 0 {
            return Err(ProofError::Failed);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if fr == *old_root && sr == *new_root && snode == 0 {
        Ok(())
    } else {
        Err(ProofError::Failed)
    }
}

/// The compact range `[0, size)`: the hashes of the complete subtrees that the first `size`
/// leaves split into, largest first (one per set bit of `size`).
///
/// Leaves fold in one at a time with `O(log n)` memory; the root is available at every
/// size. The server uses it to write the stored hashes each append creates; the stream
/// verifier and the audit use it to recompute roots without storing the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    subtrees: Vec<Hash>,
}

impl CompactRange {
    /// The empty range.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Rebuilds a range from its size and subtree hashes (largest first), as returned by
    /// [`CompactRange::subtrees`]. `None` unless there is one hash per set bit of `size`.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Option<CompactRange> {
        (subtrees.len() == size.count_ones() as usize).then_some(CompactRange { size, subtrees })
    }

    /// Reads the range `[0, size)` from storage: one batched read of `popcount(size)` hashes.
    pub fn read(size: u64, reader: &impl HashReader) -> Result<CompactRange, ProveError> {
        if size > MAX_STORED_SIZE {
            return Err(ProveError::OutOfRange);
        }
        let mut pieces = Vec::new();
        decompose(0, size, &mut pieces);
        let indexes: Vec<u64> = pieces.iter().map(|s| s.stored_index()).collect();
        let subtrees = reader.read_hashes(&indexes).map_err(ProveError::Read)?;
        if subtrees.len() != indexes.len() {
            return Err(ProveError::ShortRead {
                wanted: indexes.len(),
                got: subtrees.len(),
            });
        }
        Ok(CompactRange { size, subtrees })
    }

    /// The number of leaves folded in.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete subtree hashes, largest first.
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// The RFC 6962 root of the leaves folded in so far.
    pub fn root(&self) -> Hash {
        fold_range(&self.subtrees)
    }

    /// Folds in the next leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        self.append_stored(leaf, |_, _| {});
    }

    /// Folds in the next leaf hash and reports every hash a log must store for it: the leaf
    /// hash and each node it completes, as `(stored index, hash)` in increasing index order.
    pub fn append_stored(&mut self, leaf: Hash, mut store: impl FnMut(u64, Hash)) {
        let n = self.size;
        store(stored_hash_index(0, n), leaf);
        let mut hash = leaf;
        // Leaf n completes one subtree per trailing one bit of n.
        for level in 1..=n.trailing_ones() {
            // The invariant (one hash per set bit of size) guarantees a left sibling here.
            let left = self.subtrees.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            store(stored_hash_index(level as u8, n >> level), hash);
        }
        self.subtrees.push(hash);
        self.size = n + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// RFC 6962 `MTH` computed straight from the definition, as an oracle.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn stored_hash_layout_matches_sumdb() {
        // Level-0 hashes of records 0..8, then the nodes they complete, in write order:
        // record 0 -> [0]; record 1 -> [1, (1,0)]; record 2 -> [3]; record 3 -> [4, (1,1), (2,0)].
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
        assert_eq!(stored_hash_index(0, 3), 4);
        assert_eq!(stored_hash_index(1, 1), 5);
        assert_eq!(stored_hash_index(2, 0), 6);
        assert_eq!(stored_hash_index(0, 4), 7);
        for (size, count) in [(0, 0), (1, 1), (2, 3), (3, 4), (4, 7), (5, 8), (8, 15)] {
            assert_eq!(stored_hash_count(size), count, "size {size}");
        }
    }

    #[test]
    fn split_stored_hash_index_inverts_the_layout() {
        let mut index = 0;
        for record in 0..5000u64 {
            for level in 0..=record.trailing_ones() as u8 {
                assert_eq!(stored_hash_index(level, record >> level), index);
                assert_eq!(
                    split_stored_hash_index(index),
                    (record, level),
                    "index {index}"
                );
                index += 1;
            }
        }
        let big = (1u64 << 40) + 12345;
        assert_eq!(split_stored_hash_index(stored_hash_index(0, big)), (big, 0));
        let node = stored_hash_index(3, big >> 3);
        let (record, level) = split_stored_hash_index(node);
        assert_eq!((record >> 3, level), (big >> 3, 3));
    }

    #[test]
    fn append_stores_every_index_once_in_order() {
        let mut range = CompactRange::new();
        let mut stored: Vec<(u64, Hash)> = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..300u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            range.append_stored(leaf, |idx, h| stored.push((idx, h)));
            assert_eq!(stored.len() as u64, stored_hash_count(range.size()));
            assert_eq!(range.root(), reference_root(&leaves));
        }
        for (i, (idx, _)) in stored.iter().enumerate() {
            assert_eq!(
                *idx, i as u64,
                "stored hashes must be written densely, in order"
            );
        }
        let all: Vec<Hash> = stored.into_iter().map(|(_, h)| h).collect();
        for size in 0..=300u64 {
            let root = tree_hash(size, &all).expect("tree hash");
            assert_eq!(root, reference_root(&leaves[..size as usize]));
            let read = CompactRange::read(size, &all).expect("compact range");
            assert_eq!(read.root(), root);
        }
    }

    #[test]
    fn from_parts_requires_one_hash_per_set_bit() {
        let h = leaf_hash(b"x");
        assert!(CompactRange::from_parts(3, vec![h, h]).is_some());
        assert!(CompactRange::from_parts(3, vec![h]).is_none());
        assert!(CompactRange::from_parts(0, vec![]).is_some());
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }
}
