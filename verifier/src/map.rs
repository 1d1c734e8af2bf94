//! The state map: an authenticated map from each document, `(table, id)`, to the journal
//! index of its live revision, with proofs that a document's revision is the current one
//! and proofs that a document has none (docs/FORMAT.md §12).
//!
//! The map is a binary sparse Merkle tree over 256-bit keys, `SHA-256` of the document's
//! table and id ([`map_key`]), in which a subtree holding one key is that key's leaf and a
//! subtree holding none is [`EMPTY_SUBTREE`] (all zeros): the shape of a
//! Jellyfish-style compacted tree. Its root is a function of the set of `(key, index)`
//! pairs alone, whatever order they were written in. A proof is the path from the root to
//! where the key's leaf is, or would be: the sibling hash at each depth, then what ends
//! the path (the key's own leaf; another key's leaf that holds the subtree alone; or an
//! empty subtree). With keys spread by SHA-256 a path is about `log2(n)` long: at ten
//! million documents, some 24 siblings, 800 bytes.
//!
//! Hashes are domain-separated from the journal's RFC 6962 hashes (prefixes 0x00 and
//! 0x01) by prefixes of their own, so that no map node can be taken for a tree node:
//!
//! * key: `SHA-256(0x10 || u32 BE len(table) || table || id)`
//! * leaf: `SHA-256(0x11 || key || u64 BE journal index)`
//! * interior node: `SHA-256(0x12 || left || right)`
//!
//! [`StateMap`] is the map in memory, as its definition reads: every hash computed from the
//! sorted keys. It is what the tests and small audits use, and the reference any faster
//! implementation is checked against.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// Prefix of a key.
const KEY_PREFIX: u8 = 0x10;
/// Prefix of a leaf hash.
const LEAF_PREFIX: u8 = 0x11;
/// Prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x12;

/// The hash of a subtree that holds no key, and the root of the empty map.
pub const EMPTY_SUBTREE: Hash = Hash([0; 32]);

/// Most siblings a proof can have: two distinct 256-bit keys differ at some bit.
pub const MAX_DEPTH: usize = 256;

/// A document's key in the map.
pub fn map_key(table: &str, id: &str) -> Hash {
    let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
    Hash(
        Sha256::new()
            .chain_update([KEY_PREFIX])
            .chain_update(len.to_be_bytes())
            .chain_update(table.as_bytes())
            .chain_update(id.as_bytes())
            .finalize()
            .into(),
    )
}

/// The hash of the leaf of `key`, whose live revision is at journal `index`.
pub fn map_leaf_hash(key: &Hash, index: u64) -> Hash {
    Hash(
        Sha256::new()
            .chain_update([LEAF_PREFIX])
            .chain_update(key.0)
            .chain_update(index.to_be_bytes())
            .finalize()
            .into(),
    )
}

/// The hash of an interior node.
pub fn map_node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash(
        Sha256::new()
            .chain_update([NODE_PREFIX])
            .chain_update(left.0)
            .chain_update(right.0)
            .finalize()
            .into(),
    )
}

/// Bit `depth` of `key`, counting from the most significant bit of its first byte: 0
/// goes left, 1 right.
pub fn bit(key: &Hash, depth: usize) -> bool {
    key.0[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// Where a proof's path ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// An empty subtree: no key has the path's prefix.
    Empty,
    /// A leaf holding its subtree alone: the key itself, or another key with the path's
    /// prefix (then the key is absent).
    Leaf {
        /// The leaf's key.
        key: Hash,
        /// The journal index it maps to.
        index: u64,
    },
}

/// The path from the map's root to where a key is or would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// The sibling of the path's node at each depth from 1 down, the root's children
    /// first.
    pub siblings: Vec<Hash>,
    /// What ends the path.
    pub terminal: Terminal,
}

/// What a checked proof shows about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The key's live revision is at this journal index.
    Current(u64),
    /// The key has no live revision.
    Absent,
}

/// Why a map proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The proof's bytes are not a proof (the message says where).
    Malformed(String),
    /// The path ends in another key's leaf that does not share the path's prefix with the
    /// key looked up, so it says nothing about that key.
    OffPath,
    /// The path does not hash to the root it was checked against.
    RootMismatch {
        /// The root the proof leads to.
        computed: Hash,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Malformed(why) => write!(f, "the state proof is malformed: {why}"),
            MapError::OffPath => {
                f.write_str("the state proof ends in the leaf of a key whose path is not the key's")
            }
            MapError::RootMismatch { computed } => write!(
                f,
                "the state proof leads to root {computed}, not the checkpoint's state root"
            ),
        }
    }
}

impl std::error::Error for MapError {}

/// Checks `proof` for `key` against the map root `root`: whether the key is current at a
/// journal index, or absent.
pub fn check_map_proof(root: &Hash, key: &Hash, proof: &MapProof) -> Result<Lookup, MapError> {
    let depth = proof.siblings.len();
    if depth > MAX_DEPTH {
        return Err(MapError::Malformed(format!(
            "{depth} siblings, more than {MAX_DEPTH}"
        )));
    }
    let (mut hash, found) = match proof.terminal {
        Terminal::Empty => (EMPTY_SUBTREE, Lookup::Absent),
        Terminal::Leaf { key: other, index } => {
            let found = if other == *key {
                Lookup::Current(index)
            } else if (0..depth).all(|d| bit(&other, d) == bit(key, d)) {
                Lookup::Absent
            } else {
                return Err(MapError::OffPath);
            };
            (map_leaf_hash(&other, index), found)
        }
    };
    for (d, sibling) in proof.siblings.iter().enumerate().rev() {
        hash = if bit(key, d) {
            map_node_hash(sibling, &hash)
        } else {
            map_node_hash(&hash, sibling)
        };
    }
    if hash != *root {
        return Err(MapError::RootMismatch { computed: hash });
    }
    Ok(found)
}

impl MapProof {
    /// The proof's bytes: a tag (0 an empty subtree, 1 a leaf, then its key and u64 BE
    /// index), the number of siblings as u16 BE, and the siblings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(43 + 32 * self.siblings.len());
        match self.terminal {
            Terminal::Empty => out.push(0),
            Terminal::Leaf { key, index } => {
                out.push(1);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&index.to_be_bytes());
            }
        }
        // At most MAX_DEPTH siblings are made or decoded.
        out.extend_from_slice(&(self.siblings.len() as u16).to_be_bytes());
        for s in &self.siblings {
            out.extend_from_slice(&s.0);
        }
        out
    }

    /// A proof from its bytes ([`MapProof::encode`]).
    pub fn decode(bytes: &[u8]) -> Result<MapProof, MapError> {
        let bad = |why: &str| MapError::Malformed(why.to_owned());
        let (terminal, rest) = match bytes.split_first() {
            Some((0, rest)) => (Terminal::Empty, rest),
            Some((1, rest)) if rest.len() >= 40 => {
                let key = Hash(rest[..32].try_into().map_err(|_| bad("leaf key"))?);
                let index = u64::from_be_bytes(rest[32..40].try_into().map_err(|_| bad("index"))?);
                (Terminal::Leaf { key, index }, &rest[40..])
            }
            Some((1, _)) => return Err(bad("a leaf shorter than its key and index")),
            Some((tag, _)) => return Err(MapError::Malformed(format!("terminal tag {tag}"))),
            None => return Err(bad("no bytes")),
        };
        let (count, rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("no sibling count"))?;
        let count = usize::from(u16::from_be_bytes(*count));
        if count > MAX_DEPTH {
            return Err(MapError::Malformed(format!(
                "{count} siblings, more than {MAX_DEPTH}"
            )));
        }
        if rest.len() != 32 * count {
            return Err(MapError::Malformed(format!(
                "{} bytes of siblings for {count} siblings",
                rest.len()
            )));
        }
        let siblings = rest
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().unwrap_or_default()))
            .collect();
        Ok(MapProof { siblings, terminal })
    }
}

/// The state map in memory: the definition of its root and proofs, computed from the
/// sorted keys each time (`O(n)` per root or proof).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMap {
    entries: BTreeMap<Hash, u64>,
}

impl StateMap {
    /// The empty map.
    pub fn new() -> StateMap {
        StateMap::default()
    }

    /// Maps `key` to `index`, replacing what it mapped to.
    pub fn insert(&mut self, key: Hash, index: u64) {
        self.entries.insert(key, index);
    }

    /// Removes `key` (a document deleted).
    pub fn remove(&mut self, key: &Hash) {
        self.entries.remove(key);
    }

    /// What `key` maps to.
    pub fn get(&self, key: &Hash) -> Option<u64> {
        self.entries.get(key).copied()
    }

    /// How many keys the map holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The root.
    pub fn root(&self) -> Hash {
        let sorted: Vec<Pair> = self.entries.iter().map(|(k, v)| (*k, *v)).collect();
        subtree(&sorted, 0)
    }

    /// The proof for `key`, present or not.
    pub fn prove(&self, key: &Hash) -> MapProof {
        let sorted: Vec<Pair> = self.entries.iter().map(|(k, v)| (*k, *v)).collect();
        let mut slice = sorted.as_slice();
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            match slice {
                [] => {
                    return MapProof {
                        siblings,
                        terminal: Terminal::Empty,
                    };
                }
                [(k, index)] => {
                    return MapProof {
                        siblings,
                        terminal: Terminal::Leaf {
                            key: *k,
                            index: *index,
                        },
                    };
                }
                _ => {
                    let (left, right) = split(slice, depth);
                    let (mine, other) = if bit(key, depth) {
                        (right, left)
                    } else {
                        (left, right)
                    };
                    siblings.push(subtree(other, depth + 1));
                    slice = mine;
                    depth += 1;
                }
            }
        }
    }
}

/// A key and the journal index it maps to.
type Pair = (Hash, u64);

/// The keys of a sorted slice whose bit `depth` is 0, and those whose bit is 1 (the keys
/// share their first `depth` bits).
fn split(sorted: &[Pair], depth: usize) -> (&[Pair], &[Pair]) {
    let at = sorted.partition_point(|(k, _)| !bit(k, depth));
    sorted.split_at(at)
}

/// The hash of the subtree at `depth` holding the keys of `sorted` (which share their
/// first `depth` bits).
fn subtree(sorted: &[Pair], depth: usize) -> Hash {
    match sorted {
        [] => EMPTY_SUBTREE,
        [(k, index)] => map_leaf_hash(k, *index),
        _ => {
            let (left, right) = split(sorted, depth);
            map_node_hash(&subtree(left, depth + 1), &subtree(right, depth + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u32) -> Hash {
        map_key("t", &format!("doc-{n}"))
    }

    #[test]
    fn every_key_of_small_maps_proves_current_or_absent() {
        // Every map of the first n keys, for n up to 24, and every one of 32 keys looked
        // up in it: present keys prove their index, the others prove absence.
        for n in 0..=24u32 {
            let mut map = StateMap::new();
            for i in 0..n {
                map.insert(key(i), u64::from(i) * 3);
            }
            let root = map.root();
            for i in 0..32u32 {
                let proof = map.prove(&key(i));
                let expected = if i < n {
                    Lookup::Current(u64::from(i) * 3)
                } else {
                    Lookup::Absent
                };
                assert_eq!(
                    check_map_proof(&root, &key(i), &proof),
                    Ok(expected),
                    "n={n} i={i}"
                );
                let decoded = MapProof::decode(&proof.encode()).expect("decodes");
                assert_eq!(decoded, proof);
            }
        }
    }

    /// The worked example of docs/FORMAT.md §12, its hashes computed there with Python's
    /// hashlib from the definitions (not with this code).
    #[test]
    fn the_worked_example_of_the_format() {
        let (b1, b2, b3) = (
            map_key("books", "b1"),
            map_key("books", "b2"),
            map_key("books", "b3"),
        );
        assert_eq!(
            b1.to_hex(),
            "0d301b1cf8a8da439c580f4880ceded5f76f6f5b5218c327336dcc6b81eb34a4"
        );
        let mut map = StateMap::new();
        map.insert(b1, 0);
        map.insert(b2, 1);
        map.insert(b3, 5);
        let root = map.root();
        assert_eq!(
            root.0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "1f1e4380390db032b29c4cfe904f8a39de04a8d975458b716305eb5fe8d67017"
        );
        // b1 and b3 share their first 7 bits, b2 starts with 1: b1's path has b2's leaf,
        // six empty subtrees and b3's leaf beside it.
        let proof = map.prove(&b1);
        let mut expected = vec![map_leaf_hash(&b2, 1)];
        expected.extend([EMPTY_SUBTREE; 6]);
        expected.push(map_leaf_hash(&b3, 5));
        assert_eq!(proof.siblings, expected);
        assert_eq!(check_map_proof(&root, &b1, &proof), Ok(Lookup::Current(0)));
        // The table's length keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(map_key("ab", "c"), map_key("a", "bc"));
    }

    #[test]
    fn the_empty_map_and_one_key() {
        let empty = StateMap::new();
        assert_eq!(empty.root(), EMPTY_SUBTREE);
        let proof = empty.prove(&key(1));
        assert_eq!(proof.siblings.len(), 0);
        assert_eq!(
            check_map_proof(&EMPTY_SUBTREE, &key(1), &proof),
            Ok(Lookup::Absent)
        );
        let mut one = StateMap::new();
        one.insert(key(1), 7);
        assert_eq!(one.root(), map_leaf_hash(&key(1), 7));
        // Another key is absent: the one leaf holds the whole tree.
        let other = one.prove(&key(2));
        assert_eq!(
            check_map_proof(&one.root(), &key(2), &other),
            Ok(Lookup::Absent)
        );
    }

    #[test]
    fn a_stale_or_false_answer_does_not_check() {
        let mut map = StateMap::new();
        for i in 0..100 {
            map.insert(key(i), u64::from(i));
        }
        let old_root = map.root();
        let old_proof = map.prove(&key(5));
        map.insert(key(5), 500); // updated
        map.remove(&key(6)); // deleted
        let root = map.root();
        // The proof of the old version checks against the old root only.
        assert_eq!(
            check_map_proof(&old_root, &key(5), &old_proof),
            Ok(Lookup::Current(5))
        );
        assert!(matches!(
            check_map_proof(&root, &key(5), &old_proof),
            Err(MapError::RootMismatch { .. })
        ));
        // Claiming key 6 still current, or key 7 absent, fails on the new root.
        let gone = map.prove(&key(6));
        assert_eq!(check_map_proof(&root, &key(6), &gone), Ok(Lookup::Absent));
        let mut lie = map.prove(&key(7));
        lie.terminal = Terminal::Empty;
        assert!(check_map_proof(&root, &key(7), &lie).is_err());
        // Another key's leaf off the path says nothing.
        let mut off = map.prove(&key(8));
        off.terminal = map.prove(&key(9)).terminal;
        assert!(check_map_proof(&root, &key(8), &off).is_err());
    }

    #[test]
    fn bytes_that_are_not_a_proof_are_refused() {
        for bad in [
            &[][..],
            &[2, 0, 0][..],
            &[1, 0][..],
            &[0, 0][..],
            &[0, 0, 1][..],
            &[0, 1, 1][..],
        ] {
            assert!(MapProof::decode(bad).is_err(), "{bad:?}");
        }
        let mut long = vec![0, 1, 1];
        long.extend(std::iter::repeat_n(0, 32 * 257));
        assert!(MapProof::decode(&long).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The root depends on the set of pairs only, not on the order of writes.
        #[test]
        fn the_root_is_the_same_in_any_order(
            ops in proptest::collection::vec((0u32..40, any::<bool>(), 0u64..1000), 0..60),
            seed in any::<u64>(),
        ) {
            let mut map = StateMap::new();
            for (k, live, index) in &ops {
                if *live { map.insert(key(*k), *index) } else { map.remove(&key(*k)) }
            }
            let mut pairs: Vec<(Hash, u64)> = map.entries.iter().map(|(k, v)| (*k, *v)).collect();
            // A fixed shuffle of the final pairs, inserted into a fresh map.
            let mut s = seed | 1;
            for i in (1..pairs.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                pairs.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut again = StateMap::new();
            for (k, v) in pairs { again.insert(k, v) }
            prop_assert_eq!(again.root(), map.root());
        }

        /// Any one bit changed in a proof's bytes makes it fail.
        #[test]
        fn any_one_bit_changed_fails(
            n in 1u32..40, look in 0u32..50, flip in any::<prop::sample::Index>(),
        ) {
            let mut map = StateMap::new();
            for i in 0..n { map.insert(key(i), u64::from(i) + 10) }
            let root = map.root();
            let k = key(look);
            let proof = map.prove(&k);
            prop_assert!(check_map_proof(&root, &k, &proof).is_ok());
            let mut bytes = proof.encode();
            let bit_at = flip.index(bytes.len() * 8);
            bytes[bit_at / 8] ^= 0x80 >> (bit_at % 8);
            let checked = MapProof::decode(&bytes).and_then(|p| check_map_proof(&root, &k, &p));
            prop_assert!(checked.is_err(), "bit {} changed still checks: {:?}", bit_at, checked);
        }
    }
}
