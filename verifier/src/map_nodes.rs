//! The state map as it is stored: one record per interior node, updated a key at a time
//! and hashed once per commit (docs/FORMAT.md §12).
//!
//! [`crate::map::StateMap`] defines the map's root from its sorted keys, which costs
//! `O(n)` per root. A ledger needs a root after every transaction, so [`Map`] keeps the
//! tree itself: for every subtree holding two keys or more, a [`Node`] record naming its
//! two children (each an empty subtree, a one-key leaf, or a node with its hash). Where
//! the records live is the [`MapNodes`] trait's business: in memory ([`MemoryNodes`]), in
//! the ledger's storage for the server. An audit keeps the same records as a linked tree
//! instead, [`MemoryMap`], which finds a node by following its parent's link rather than
//! by looking its place up.
//!
//! [`Map::set`] changes the shape of the tree along one key's path and marks the nodes it
//! passes as changed; [`Map::root`] hashes the changed nodes again, each once however many
//! keys changed under it, and [`Map::prove`] reads a key's path. A record's place is the
//! key's first `depth` bits, the rest zeroed, then `depth` ([`node_position`]): the
//! records on one path sort beside each other from some depth down, so a storage engine
//! ordered by key keeps a path's lower records on few pages.

use std::collections::HashMap;
use std::convert::Infallible;

use crate::hash::Hash;
use crate::map::{EMPTY_SUBTREE, MapProof, Terminal, bit, map_leaf_hash, map_node_hash};

/// One child of an interior node, or the whole map at its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// A subtree holding no key.
    Empty,
    /// A subtree holding one key: that key's leaf.
    Leaf {
        /// The key.
        key: Hash,
        /// The journal index of its live revision.
        index: u64,
    },
    /// A subtree of two keys or more, with its hash; `None` while something under it has
    /// changed since it was hashed (never stored).
    Node(Option<Hash>),
}

impl Child {
    /// The subtree's hash, if known.
    fn hash(&self) -> Option<Hash> {
        match self {
            Child::Empty => Some(EMPTY_SUBTREE),
            Child::Leaf { key, index } => Some(map_leaf_hash(key, *index)),
            Child::Node(hash) => *hash,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            Child::Empty => out.push(0),
            Child::Leaf { key, index } => {
                out.push(1);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&index.to_be_bytes());
            }
            Child::Node(hash) => {
                out.push(2);
                out.extend_from_slice(&(*hash)?.0);
            }
        }
        Some(())
    }

    fn decode_from(bytes: &[u8]) -> Option<(Child, &[u8])> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            0 => Some((Child::Empty, rest)),
            1 if rest.len() >= 40 => {
                let key = Hash(rest[..32].try_into().ok()?);
                let index = u64::from_be_bytes(rest[32..40].try_into().ok()?);
                Some((Child::Leaf { key, index }, &rest[40..]))
            }
            2 if rest.len() >= 32 => Some((
                Child::Node(Some(Hash(rest[..32].try_into().ok()?))),
                &rest[32..],
            )),
            _ => None,
        }
    }

    /// The stored form of a child alone (the map's root): tag 0 empty; 1, the key and its
    /// u64 BE index; 2, the node's hash. `None` for a node not hashed yet.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(41);
        self.encode_into(&mut out)?;
        Some(out)
    }

    /// A child from exactly its stored form.
    pub fn decode(bytes: &[u8]) -> Option<Child> {
        match Child::decode_from(bytes)? {
            (child, []) => Some(child),
            _ => None,
        }
    }
}

/// An interior node: a subtree of two keys or more, by its two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The half whose keys have a 0 at the node's depth, then the half with a 1.
    pub children: [Child; 2],
}

impl Node {
    /// The stored form: the two children's forms, one after the other (at most 82
    /// bytes). `None` while a child is not hashed yet.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(82);
        for child in &self.children {
            child.encode_into(&mut out)?;
        }
        Some(out)
    }

    /// A node from exactly its stored form.
    pub fn decode(bytes: &[u8]) -> Option<Node> {
        let (left, rest) = Child::decode_from(bytes)?;
        let (right, rest) = Child::decode_from(rest)?;
        rest.is_empty().then_some(Node {
            children: [left, right],
        })
    }

    fn hash(&self) -> Option<Hash> {
        Some(map_node_hash(
            &self.children[0].hash()?,
            &self.children[1].hash()?,
        ))
    }
}

/// Where the record of the node at `depth` on `key`'s path is kept: the key's first
/// `depth` bits with the others zeroed, then `depth` as one byte.
pub fn node_position(depth: usize, key: &Hash) -> [u8; 33] {
    let mut out = [0u8; 33];
    let full = depth / 8;
    out[..full].copy_from_slice(&key.0[..full]);
    if !depth.is_multiple_of(8) {
        out[full] = key.0[full] & !(0xff >> (depth % 8));
    }
    out[32] = depth as u8;
    out
}

/// Where a map's records are kept.
pub trait MapNodes {
    /// Why a record could not be read.
    type Error;

    /// The map as a whole: what its root is.
    fn root(&mut self) -> Result<Child, Self::Error>;

    /// Replaces the root.
    fn set_root(&mut self, root: Child);

    /// The record of the node at `depth` on `key`'s path. It exists: the node's parent
    /// (or the root) says so; an implementation that has none reports damage.
    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node, Self::Error>;

    /// Writes the record of the node at `depth` on `key`'s path, or removes it (`None`).
    fn set_node(&mut self, depth: usize, key: &Hash, node: Option<Node>);
}

/// The map over its records.
#[derive(Debug)]
pub struct Map<S> {
    nodes: S,
}

impl<S: MapNodes> Map<S> {
    /// The map whose records `nodes` holds.
    pub fn new(nodes: S) -> Map<S> {
        Map { nodes }
    }

    /// The records.
    pub fn nodes(&self) -> &S {
        &self.nodes
    }

    /// The records, to hand back.
    pub fn into_nodes(self) -> S {
        self.nodes
    }

    /// Maps `key` to journal `index`, or removes it (`None`). The root is hashed again by
    /// the next [`Map::root`].
    pub fn set(&mut self, key: &Hash, index: Option<u64>) -> Result<(), S::Error> {
        let mut path = Vec::new();
        let mut here = self.nodes.root()?;
        while let Child::Node(_) = here {
            let node = self.nodes.node(path.len(), key)?;
            here = node.children[usize::from(bit(key, path.len()))];
            path.push(node);
        }
        let depth = path.len();
        let mut below = match (here, index) {
            (Child::Leaf { key: other, .. }, None) if other == *key => Child::Empty,
            // The walk ends at a leaf or an empty subtree.
            (_, None) => return Ok(()),
            (Child::Leaf { key: other, .. }, Some(index)) if other == *key => {
                Child::Leaf { key: *key, index }
            }
            (
                Child::Leaf {
                    key: other,
                    index: theirs,
                },
                Some(index),
            ) => {
                self.split(depth, key, index, &other, theirs);
                Child::Node(None)
            }
            (_, Some(index)) => Child::Leaf { key: *key, index },
        };
        for (depth, mut node) in path.into_iter().enumerate().rev() {
            let side = usize::from(bit(key, depth));
            node.children[side] = below;
            let other = node.children[1 - side];
            below = match (below, other) {
                // One key or none left under the node: it goes, and what is left moves up.
                (Child::Empty, Child::Empty | Child::Leaf { .. }) => {
                    self.nodes.set_node(depth, key, None);
                    other
                }
                (Child::Leaf { .. }, Child::Empty) => {
                    self.nodes.set_node(depth, key, None);
                    below
                }
                _ => {
                    self.nodes.set_node(depth, key, Some(node));
                    Child::Node(None)
                }
            };
        }
        self.nodes.set_root(below);
        Ok(())
    }

    /// Puts `key` and `other`, which share their first `depth` bits, under new nodes from
    /// `depth` down to the first bit where they differ.
    fn split(&mut self, depth: usize, key: &Hash, index: u64, other: &Hash, theirs: u64) {
        let mut differ = depth;
        while bit(key, differ) == bit(other, differ) {
            differ += 1;
        }
        let mut children = [Child::Empty; 2];
        children[usize::from(bit(key, differ))] = Child::Leaf { key: *key, index };
        children[usize::from(bit(other, differ))] = Child::Leaf {
            key: *other,
            index: theirs,
        };
        self.nodes.set_node(differ, key, Some(Node { children }));
        for d in depth..differ {
            let mut children = [Child::Empty; 2];
            children[usize::from(bit(key, d))] = Child::Node(None);
            self.nodes.set_node(d, key, Some(Node { children }));
        }
    }

    /// The map's root hash, hashing again every node changed since the last call (and
    /// writing their records back with the hashes).
    pub fn root(&mut self) -> Result<Hash, S::Error> {
        Ok(self.hashed_root()?.hash().unwrap_or(EMPTY_SUBTREE))
    }

    /// The root, hashed (and written back) if anything under it changed.
    fn hashed_root(&mut self) -> Result<Child, S::Error> {
        let root = self.nodes.root()?;
        let hashed = self.hashed(0, Hash([0; 32]), root)?;
        if hashed != root {
            self.nodes.set_root(hashed);
        }
        Ok(hashed)
    }

    /// `child`, at `depth` below `prefix`, with its hash: a changed node is hashed from
    /// its children, each hashed first if it changed too.
    fn hashed(&mut self, depth: usize, prefix: Hash, child: Child) -> Result<Child, S::Error> {
        if child != Child::Node(None) {
            return Ok(child);
        }
        let mut node = self.nodes.node(depth, &prefix)?;
        for side in 0..2 {
            let mut below = prefix;
            if side == 1 {
                below.0[depth / 8] |= 0x80 >> (depth % 8);
            }
            node.children[side] = self.hashed(depth + 1, below, node.children[side])?;
        }
        self.nodes.set_node(depth, &prefix, Some(node));
        Ok(Child::Node(node.hash()))
    }

    /// The proof for `key`, present or not, against [`Map::root`] (which it calls first).
    pub fn prove(&mut self, key: &Hash) -> Result<MapProof, S::Error> {
        let mut siblings = Vec::new();
        let mut here = self.hashed_root()?;
        while let Child::Node(_) = here {
            let node = self.nodes.node(siblings.len(), key)?;
            let side = usize::from(bit(key, siblings.len()));
            siblings.push(node.children[1 - side].hash().unwrap_or(EMPTY_SUBTREE));
            here = node.children[side];
        }
        let terminal = match here {
            Child::Leaf { key, index } => Terminal::Leaf { key, index },
            _ => Terminal::Empty,
        };
        Ok(MapProof { siblings, terminal })
    }
}

/// A map's records in memory, by position (300 to 400 bytes per key, measured): the plain
/// store, for tests and small maps; an audit uses [`MemoryMap`].
#[derive(Debug, Clone)]
pub struct MemoryNodes {
    root: Child,
    nodes: HashMap<[u8; 33], Node>,
}

impl Default for MemoryNodes {
    fn default() -> MemoryNodes {
        MemoryNodes {
            root: Child::Empty,
            nodes: HashMap::new(),
        }
    }
}

impl MemoryNodes {
    /// How many interior nodes the map has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the map has no interior node (it holds one key or none).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The record at a [`node_position`].
    pub fn record(&self, at: &[u8; 33]) -> Option<&Node> {
        self.nodes.get(at)
    }

    /// Every record, by position, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8; 33], &Node)> {
        self.nodes.iter()
    }

    /// The root as last set (hashed by [`Map::root`]).
    pub fn root_child(&self) -> Child {
        self.root
    }
}

/// A record the map needs and [`MemoryNodes`] does not have: a bug, never input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingNode {
    /// The depth of the node.
    pub depth: usize,
}

impl std::fmt::Display for MissingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the state map has no node at depth {}", self.depth)
    }
}

impl std::error::Error for MissingNode {}

impl MapNodes for MemoryNodes {
    type Error = MissingNode;

    fn root(&mut self) -> Result<Child, MissingNode> {
        Ok(self.root)
    }

    fn set_root(&mut self, root: Child) {
        self.root = root;
    }

    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node, MissingNode> {
        self.nodes
            .get(&node_position(depth, key))
            .copied()
            .ok_or(MissingNode { depth })
    }

    fn set_node(&mut self, depth: usize, key: &Hash, node: Option<Node>) {
        let at = node_position(depth, key);
        match node {
            Some(node) => self.nodes.insert(at, node),
            None => self.nodes.remove(&at),
        };
    }
}

/// The map in memory as a linked tree, as an audit replays it: [`Map`] over
/// [`MemoryNodes`], made faster and smaller. It holds the same records, with the same
/// contents after every call (the tests compare them), but each record's slot also says
/// where its children that are nodes are: a walk follows those links rather than looking
/// a [`node_position`] up at every depth, and a record costs its 96 bytes and 8 of links
/// (about 140 bytes per key, measured).
///
/// Nothing can be missing from it, so its calls never fail; they return `Result`s as
/// [`Map`]'s do, so that code reads either map alike.
#[derive(Debug, Clone)]
pub struct MemoryMap {
    root: Child,
    /// The root's slot, when the root is a node.
    top: u32,
    slots: Vec<Slot>,
    /// The slots of removed nodes, to use again.
    free: Vec<u32>,
}

/// A node's record, with the slots of its children: `below[side]` is meaningful only
/// while `node.children[side]` is a [`Child::Node`] ([`NO_SLOT`] otherwise).
#[derive(Debug, Clone, Copy)]
struct Slot {
    node: Node,
    below: [u32; 2],
}

/// The link of a child that is not a node.
const NO_SLOT: u32 = u32::MAX;

impl Default for MemoryMap {
    fn default() -> MemoryMap {
        MemoryMap {
            root: Child::Empty,
            top: NO_SLOT,
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl MemoryMap {
    /// As [`Map::set`].
    pub fn set(&mut self, key: &Hash, index: Option<u64>) -> Result<(), Infallible> {
        if let Some((root, top)) = self.set_under(0, (self.root, self.top), key, index) {
            (self.root, self.top) = (root, top);
        }
        Ok(())
    }

    /// [`Map::set`] in the subtree `child`, in slot `at` if it is a node, at `depth` on
    /// `key`'s path: what the subtree becomes (and its slot), or `None` if nothing
    /// changes (removing an absent key).
    fn set_under(
        &mut self,
        depth: usize,
        (child, at): (Child, u32),
        key: &Hash,
        index: Option<u64>,
    ) -> Option<(Child, u32)> {
        if let Child::Node(_) = child {
            let side = usize::from(bit(key, depth));
            let Slot { node, below } = self.slots[at as usize];
            let (new, link) =
                self.set_under(depth + 1, (node.children[side], below[side]), key, index)?;
            let other = node.children[1 - side];
            return Some(match (new, other) {
                // One key or none left under the node: it goes, and what is left moves up.
                (Child::Empty, Child::Empty | Child::Leaf { .. }) => {
                    self.free.push(at);
                    (other, NO_SLOT)
                }
                (Child::Leaf { .. }, Child::Empty) => {
                    self.free.push(at);
                    (new, NO_SLOT)
                }
                _ => {
                    let slot = &mut self.slots[at as usize];
                    slot.node.children[side] = new;
                    slot.below[side] = link;
                    (Child::Node(None), at)
                }
            });
        }
        // The walk ends at a leaf or an empty subtree.
        let end = match (child, index) {
            (Child::Leaf { key: other, .. }, None) if other == *key => Child::Empty,
            (_, None) => return None,
            (Child::Leaf { key: other, .. }, Some(index)) if other == *key => {
                Child::Leaf { key: *key, index }
            }
            (
                Child::Leaf {
                    key: other,
                    index: theirs,
                },
                Some(index),
            ) => {
                let top = self.split(depth, key, index, &other, theirs);
                return Some((Child::Node(None), top));
            }
            (_, Some(index)) => Child::Leaf { key: *key, index },
        };
        Some((end, NO_SLOT))
    }

    /// [`Map::split`]; returns the slot of the new node at `depth`.
    fn split(&mut self, depth: usize, key: &Hash, index: u64, other: &Hash, theirs: u64) -> u32 {
        let mut differ = depth;
        while bit(key, differ) == bit(other, differ) {
            differ += 1;
        }
        let mut children = [Child::Empty; 2];
        children[usize::from(bit(key, differ))] = Child::Leaf { key: *key, index };
        children[usize::from(bit(other, differ))] = Child::Leaf {
            key: *other,
            index: theirs,
        };
        let mut link = self.add(Slot {
            node: Node { children },
            below: [NO_SLOT; 2],
        });
        for d in (depth..differ).rev() {
            let side = usize::from(bit(key, d));
            let mut slot = Slot {
                node: Node {
                    children: [Child::Empty; 2],
                },
                below: [NO_SLOT; 2],
            };
            slot.node.children[side] = Child::Node(None);
            slot.below[side] = link;
            link = self.add(slot);
        }
        link
    }

    /// Keeps `slot`, in a free slot if there is one.
    fn add(&mut self, slot: Slot) -> u32 {
        if let Some(at) = self.free.pop() {
            self.slots[at as usize] = slot;
            return at;
        }
        self.slots.push(slot);
        u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 nodes (400 GB of them)")
    }

    /// As [`Map::root`].
    pub fn root(&mut self) -> Result<Hash, Infallible> {
        self.root = self.hashed(self.root, self.top);
        Ok(self.root.hash().unwrap_or(EMPTY_SUBTREE))
    }

    /// [`Map::hashed`], for `child` in slot `at`.
    fn hashed(&mut self, child: Child, at: u32) -> Child {
        if child != Child::Node(None) {
            return child;
        }
        let Slot { mut node, below } = self.slots[at as usize];
        for (child, slot) in node.children.iter_mut().zip(below) {
            *child = self.hashed(*child, slot);
        }
        self.slots[at as usize].node = node;
        Child::Node(node.hash())
    }

    /// As [`Map::prove`].
    pub fn prove(&mut self, key: &Hash) -> Result<MapProof, Infallible> {
        self.root()?;
        let mut siblings = Vec::new();
        let (mut here, mut at) = (self.root, self.top);
        while let Child::Node(_) = here {
            let Slot { node, below } = &self.slots[at as usize];
            let side = usize::from(bit(key, siblings.len()));
            siblings.push(node.children[1 - side].hash().unwrap_or(EMPTY_SUBTREE));
            (here, at) = (node.children[side], below[side]);
        }
        let terminal = match here {
            Child::Leaf { key, index } => Terminal::Leaf { key, index },
            _ => Terminal::Empty,
        };
        Ok(MapProof { siblings, terminal })
    }

    /// The records: the map holds them itself (as [`Map::nodes`] are a stored map's).
    pub fn nodes(&self) -> &MemoryMap {
        self
    }

    /// As [`MemoryNodes::len`].
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// As [`MemoryNodes::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As [`MemoryNodes::record`]: the record at a [`node_position`], found by walking down
    /// the position's prefix.
    pub fn record(&self, at: &[u8; 33]) -> Option<&Node> {
        let depth = usize::from(at[32]);
        let mut prefix = Hash([0; 32]);
        prefix.0.copy_from_slice(&at[..32]);
        if node_position(depth, &prefix) != *at {
            return None; // Bits set past the depth: no node's position.
        }
        let (mut here, mut slot) = (self.root, self.top);
        for d in 0..depth {
            let Child::Node(_) = here else {
                return None;
            };
            let Slot { node, below } = &self.slots[slot as usize];
            let side = usize::from(bit(&prefix, d));
            (here, slot) = (node.children[side], below[side]);
        }
        match here {
            Child::Node(_) => Some(&self.slots[slot as usize].node),
            _ => None,
        }
    }

    /// As [`MemoryNodes::records`]: every record with its position, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = ([u8; 33], &Node)> {
        // Nodes still to visit: depth, prefix, slot.
        let mut stack = Vec::new();
        if let Child::Node(_) = self.root {
            stack.push((0, Hash([0; 32]), self.top));
        }
        std::iter::from_fn(move || {
            let (depth, prefix, at) = stack.pop()?;
            let Slot { node, below } = &self.slots[at as usize];
            for (side, (child, &slot)) in node.children.iter().zip(below).enumerate() {
                if let Child::Node(_) = child {
                    let mut under = prefix;
                    if side == 1 {
                        under.0[depth / 8] |= 0x80 >> (depth % 8);
                    }
                    stack.push((depth + 1, under, slot));
                }
            }
            Some((node_position(depth, &prefix), node))
        })
    }

    /// As [`MemoryNodes::root_child`].
    pub fn root_child(&self) -> Child {
        self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{Lookup, StateMap, check_map_proof, map_key};

    fn key(n: u32) -> Hash {
        map_key("t", &format!("doc-{n}"))
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// What an audit of a million revisions does to the map: 1M sets (one in 17 a
    /// removal) over 333k keys, a root after every third. A timing harness, not a test:
    /// `/usr/bin/time -v cargo test --release -p graven-verify --lib -- --ignored
    /// --nocapture audit_sized_replay`.
    #[test]
    #[ignore]
    fn audit_sized_replay() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let start = std::time::Instant::now();
        let mut map = MemoryMap::default();
        let mut root = EMPTY_SUBTREE;
        for i in 0..1_000_000u64 {
            let r = rng.next();
            let live = (!r.is_multiple_of(17)).then_some(i);
            map.set(&key((r >> 8) as u32 % 333_333), live).unwrap();
            if i % 3 == 2 {
                root = map.root().unwrap();
            }
        }
        eprintln!(
            "1M sets, 333k roots: {:?}, {} nodes, root {}",
            start.elapsed(),
            map.len(),
            root.to_hex()
        );
    }

    #[test]
    fn positions_keep_only_the_prefix() {
        let k = Hash([0xff; 32]);
        assert_eq!(node_position(0, &k), [0; 33]);
        let p = node_position(9, &k);
        assert_eq!((p[0], p[1], p[2], p[32]), (0xff, 0x80, 0, 9));
        assert_eq!(node_position(255, &k)[31], 0xfe);
    }

    #[test]
    fn records_round_trip_and_reject_other_bytes() {
        let node = Node {
            children: [
                Child::Leaf {
                    key: key(1),
                    index: 7,
                },
                Child::Node(Some(key(2))),
            ],
        };
        let bytes = node.encode().expect("hashed");
        assert_eq!(bytes.len(), 41 + 33);
        assert_eq!(Node::decode(&bytes), Some(node));
        for len in 0..bytes.len() {
            assert_eq!(Node::decode(&bytes[..len]), None, "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Node::decode(&longer), None);
        assert_eq!(Child::decode(&[3]), None);
        assert_eq!(
            Child::Node(None).encode(),
            None,
            "an unhashed node is not stored"
        );
        assert_eq!(
            Child::decode(&Child::Empty.encode().unwrap()),
            Some(Child::Empty)
        );
    }

    /// Random inserts, updates and removals, the root and every proof compared with the
    /// reference after each step, and the records left exactly what a fresh build of the
    /// same keys makes (no node left behind by a removal).
    #[test]
    fn agrees_with_the_definition_step_by_step() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut map = Map::new(MemoryNodes::default());
            let mut reference = StateMap::new();
            for step in 0..300u64 {
                let k = key((rng.next() % 40) as u32);
                if rng.next().is_multiple_of(3) {
                    map.set(&k, None).unwrap();
                    reference.remove(&k);
                } else {
                    map.set(&k, Some(step)).unwrap();
                    reference.insert(k, step);
                }
                if step % 7 == 0 {
                    let root = map.root().unwrap();
                    assert_eq!(root, reference.root(), "seed {seed} step {step}");
                    let probe = key((rng.next() % 45) as u32);
                    let proof = map.prove(&probe).unwrap();
                    assert_eq!(proof, reference.prove(&probe), "seed {seed} step {step}");
                    let want = reference
                        .get(&probe)
                        .map_or(Lookup::Absent, Lookup::Current);
                    assert_eq!(check_map_proof(&root, &probe, &proof), Ok(want));
                }
            }
            map.root().unwrap();
            let mut fresh = Map::new(MemoryNodes::default());
            for n in 0..45 {
                if let Some(i) = reference.get(&key(n)) {
                    fresh.set(&key(n), Some(i)).unwrap();
                }
            }
            fresh.root().unwrap();
            assert_eq!(
                map.nodes().nodes,
                fresh.nodes().nodes,
                "seed {seed}: the records depend on the keys alone"
            );
            // A binary tree of n leaves has n - 1 branching nodes, and prefixes shared
            // deeper than a branch add nodes with one empty half.
            assert!(map.nodes().len() >= reference.len().saturating_sub(1));
        }
    }

    /// The linked map holds exactly the records the map over [`MemoryNodes`] does.
    fn assert_same(map: &Map<MemoryNodes>, linked: &MemoryMap, what: &str) {
        let nodes = map.nodes();
        assert_eq!(linked.root_child(), nodes.root_child(), "{what}");
        assert_eq!(linked.len(), nodes.len(), "{what}");
        assert_eq!(linked.records().count(), nodes.len(), "{what}");
        let records: HashMap<[u8; 33], Node> = linked.records().map(|(at, n)| (at, *n)).collect();
        assert_eq!(records, nodes.nodes, "{what}");
        for (at, node) in nodes.records() {
            assert_eq!(linked.record(at), Some(node), "{what}");
        }
    }

    /// Random inserts, updates and removals, over a few keys to a few hundred and keys
    /// sharing all but their last bits: the same records as [`Map`]'s after every step,
    /// unhashed and hashed, and the same roots and proofs.
    #[test]
    fn the_linked_map_keeps_the_same_records() {
        let mut close = [Hash([0; 32]), Hash([0; 32]), Hash([0xff; 32])];
        close[1].0[31] = 1;
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut map = Map::new(MemoryNodes::default());
            let mut linked = MemoryMap::default();
            let keys = 10 * seed;
            for step in 0..400u64 {
                let n = rng.next() % (keys + 3);
                let k = match n.checked_sub(keys) {
                    Some(i) => close[i as usize],
                    None => key(n as u32),
                };
                let index = (!rng.next().is_multiple_of(3)).then_some(step);
                map.set(&k, index).unwrap();
                linked.set(&k, index).unwrap();
                assert_same(&map, &linked, &format!("seed {seed} step {step}"));
                if rng.next().is_multiple_of(4) {
                    assert_eq!(linked.root(), Ok(map.root().unwrap()));
                    assert_same(&map, &linked, &format!("seed {seed} step {step}, hashed"));
                    let probe = key((rng.next() % (keys + 5)) as u32);
                    assert_eq!(linked.prove(&probe), Ok(map.prove(&probe).unwrap()));
                }
            }
        }
    }

    #[test]
    fn the_linked_map_finds_only_positions() {
        let mut linked = MemoryMap::default();
        for n in 0..50 {
            linked.set(&key(n), Some(u64::from(n))).unwrap();
        }
        linked.root().unwrap();
        let (at, node) = linked
            .records()
            .find(|(at, _)| at[32] == 3)
            .expect("depth 3");
        assert_eq!(linked.record(&at), Some(node));
        let mut off = at;
        off[0] |= 1; // A bit past the depth.
        assert_eq!(linked.record(&off), None);
        assert_eq!(linked.record(&node_position(200, &key(7))), None);
    }

    #[test]
    fn removing_every_key_leaves_the_empty_map() {
        let mut map = Map::new(MemoryNodes::default());
        let mut linked = MemoryMap::default();
        for n in 0..100 {
            map.set(&key(n), Some(u64::from(n))).unwrap();
            linked.set(&key(n), Some(u64::from(n))).unwrap();
        }
        assert_ne!(map.root().unwrap(), EMPTY_SUBTREE);
        for n in 0..100 {
            map.set(&key(n), None).unwrap();
            map.set(&key(n), None).unwrap();
            linked.set(&key(n), None).unwrap();
            linked.set(&key(n), None).unwrap();
        }
        assert_eq!(map.root().unwrap(), EMPTY_SUBTREE);
        assert!(map.nodes().is_empty());
        assert_eq!(linked.root(), Ok(EMPTY_SUBTREE));
        assert!(linked.is_empty());
        assert_eq!(linked.records().count(), 0);
    }

    #[test]
    fn a_missing_record_is_reported_not_invented() {
        let mut map = Map::new(MemoryNodes::default());
        for n in 0..10 {
            map.set(&key(n), Some(u64::from(n))).unwrap();
        }
        map.root().unwrap();
        let mut nodes = map.into_nodes();
        nodes.nodes.clear();
        let mut map = Map::new(nodes);
        assert_eq!(map.prove(&key(3)), Err(MissingNode { depth: 0 }));
    }
}
