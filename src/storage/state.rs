//! The state map in storage: the records of `graven_verify::map_nodes`, one row per
//! interior node in the `state` key space, and the map's root in `meta`.
//!
//! The map follows the docs index: every revision written sets its document's key to its
//! journal index, or removes it for a delete ([`Writer::set_state`]). A batch keeps the
//! records it changed in memory, typed, and hashes them once ([`Writer::state_root`]); its
//! commit writes each changed record once, in the same atomic batch as the revisions, so a
//! snapshot's map is always the map of its journal. Reads prove from a snapshot
//! ([`Snapshot::state_proof`]).

use std::collections::HashMap;
use std::ops::Bound;

use graven_verify::Hash;
use graven_verify::map::{MapProof, map_key};
use graven_verify::map_nodes::{Child, Map, MapNodes, Node, node_position};

use super::{
    DOCS, Error, META, META_FORMAT, Read, Result, STATE, Slot, Snapshot, Store, Writer,
    split_doc_key,
};

/// The map's root ([`Child`]'s stored form); none for the empty map.
pub(super) const META_STATE_ROOT: &[u8] = b"state_root";
/// During the upgrade to layout 6: the docs key the map has been built up to.
const META_STATE_BUILT: &[u8] = b"state_built_to";
/// Documents added to the map per durable batch of the upgrade.
const BUILD_CHUNK: usize = 65_536;

/// What a write batch has read and changed of the map.
#[derive(Debug, Default)]
pub(super) struct StateChanges {
    /// The root as the batch has it, once read.
    root: Option<Child>,
    /// Records the batch changed: a record, or `None` for one removed.
    changed: HashMap<[u8; 33], Option<Node>>,
    /// Records read from the snapshot, decoded.
    read: HashMap<[u8; 33], Node>,
    /// Whether anything changed.
    dirty: bool,
}

fn decode_root(value: Option<Vec<u8>>) -> Result<Child> {
    match value {
        None => Ok(Child::Empty),
        Some(v) => Child::decode(&v)
            .filter(|c| *c != Child::Node(None))
            .ok_or_else(|| Error::damaged("the state map's root row is not a root")),
    }
}

fn missing(at: &[u8; 33]) -> Error {
    Error::damaged(format!(
        "the state map has no node at depth {} ({}), which its parent names",
        at[32],
        hex::encode(&at[..32])
    ))
}

fn decode_node(at: &[u8; 33], value: Option<Vec<u8>>) -> Result<Node> {
    let depth = at[32];
    let value = value.ok_or_else(|| missing(at))?;
    Node::decode(&value).ok_or_else(|| {
        Error::damaged(format!(
            "the state map's node at depth {depth} ({}) is not a node",
            hex::encode(&at[..32])
        ))
    })
}

/// The map's records as a write batch has them.
struct WriterNodes<'a, 's>(&'a mut Writer<'s>);

impl MapNodes for WriterNodes<'_, '_> {
    type Error = Error;

    fn root(&mut self) -> Result<Child> {
        if let Some(root) = self.0.state.root {
            return Ok(root);
        }
        let root = decode_root(self.0.get(META, META_STATE_ROOT)?)?;
        self.0.state.root = Some(root);
        Ok(root)
    }

    fn set_root(&mut self, root: Child) {
        self.0.state.root = Some(root);
        self.0.state.dirty = true;
    }

    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node> {
        let at = node_position(depth, key);
        if let Some(node) = self.0.state.changed.get(&at) {
            return node.ok_or_else(|| missing(&at));
        }
        if let Some(node) = self.0.state.read.get(&at) {
            return Ok(*node);
        }
        let node = decode_node(&at, self.0.get(STATE, &at)?)?;
        self.0.state.read.insert(at, node);
        Ok(node)
    }

    fn set_node(&mut self, depth: usize, key: &Hash, node: Option<Node>) {
        self.0.state.changed.insert(node_position(depth, key), node);
        self.0.state.dirty = true;
    }
}

/// The map's records as a snapshot has them: read only. Stored records are all hashed,
/// so proving never writes.
struct SnapshotNodes<'a>(&'a Snapshot);

impl MapNodes for SnapshotNodes<'_> {
    type Error = Error;

    fn root(&mut self) -> Result<Child> {
        decode_root(self.0.get(META, META_STATE_ROOT)?)
    }

    fn set_root(&mut self, _: Child) {}

    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node> {
        let at = node_position(depth, key);
        decode_node(&at, self.0.get(STATE, &at)?)
    }

    fn set_node(&mut self, _: usize, _: &Hash, _: Option<Node>) {}
}

/// How deep a read ahead goes down a key's path in a map of at most `keys` keys: a
/// little past the expected depth (`log2(n)` and a bit); a deeper node is read alone.
pub(super) fn ahead_depth(keys: u64) -> usize {
    (64 - keys.leading_zeros() as usize) + 3
}

/// The reads of a key's path down to `depth`, and of the root.
pub(super) fn path_reads(table: &str, id: &str, depth: usize, out: &mut Vec<Read>) {
    let key = map_key(table, id);
    out.push(Read::Get(META, META_STATE_ROOT.to_vec()));
    out.extend((0..=depth.min(255)).map(|d| Read::Get(STATE, node_position(d, &key).to_vec())));
}

impl Writer<'_> {
    /// Sets a document's entry in the state map: the journal index of its live revision,
    /// or none (deleted).
    pub fn set_state(&mut self, table: &str, id: &str, index: Option<u64>) -> Result<()> {
        Map::new(WriterNodes(self)).set(&map_key(table, id), index)
    }

    /// The state map's root after this batch's changes so far.
    pub fn state_root(&mut self) -> Result<Hash> {
        Map::new(WriterNodes(self)).root()
    }

    /// Puts the map's changed records and root among the batch's writes.
    pub(super) fn flush_state(&mut self) -> Result<()> {
        if !self.state.dirty {
            return Ok(());
        }
        self.state_root()?;
        let changes = std::mem::take(&mut self.state);
        for (at, node) in changes.changed {
            match node {
                Some(node) => {
                    let bytes = node.encode().ok_or_else(|| {
                        Error::new(super::ErrorKind::Failed, "a state map node left unhashed")
                    })?;
                    self.put(STATE, at.to_vec(), bytes);
                }
                None => self.remove(STATE, at.to_vec()),
            }
        }
        match changes.root {
            // The empty map has no root row.
            None | Some(Child::Empty) => self.remove(META, META_STATE_ROOT),
            Some(root) => {
                let bytes = root.encode().ok_or_else(|| {
                    Error::new(
                        super::ErrorKind::Failed,
                        "the state map's root left unhashed",
                    )
                })?;
                self.put(META, META_STATE_ROOT, bytes);
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// The state map's root.
    pub fn state_root(&self) -> Result<Hash> {
        Map::new(SnapshotNodes(self)).root()
    }

    /// The proof of a document's entry in the state map, present or absent.
    pub fn state_proof(&self, table: &str, id: &str) -> Result<MapProof> {
        Map::new(SnapshotNodes(self)).prove(&map_key(table, id))
    }

    /// Every stored record of the state map, in key order: its position and bytes.
    pub fn state_rows(&self) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        self.view.range(STATE, Bound::Unbounded, Bound::Unbounded)
    }

    /// The stored root row, as stored.
    pub fn state_root_row(&self) -> Result<Option<Vec<u8>>> {
        self.get(META, META_STATE_ROOT)
    }
}

impl Store {
    /// Builds the state map of a layout-5 ledger from its docs index, [`BUILD_CHUNK`]
    /// documents per durable batch (a restart goes on from the last), then declares
    /// layout 6.
    pub(super) fn build_state(&self) -> Result<()> {
        let total = self.read()?.doc_row_count()?;
        if total > 0 {
            tracing::info!("storage layout upgrade: building the state map of {total} docs rows");
        }
        loop {
            let mut w = self.write()?;
            let start = w.get(META, META_STATE_BUILT)?;
            let from = match &start {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let rows: Vec<(Vec<u8>, Vec<u8>)> = w
                .snap
                .view
                .range(DOCS, from, Bound::Unbounded)?
                .take(BUILD_CHUNK)
                .collect::<Result<_>>()?;
            let Some((last, _)) = rows.last() else {
                w.remove(META, META_STATE_BUILT);
                w.put(
                    META,
                    META_FORMAT,
                    super::FORMAT_VERSION.to_be_bytes().to_vec(),
                );
                return w.commit();
            };
            let last = last.clone();
            for (key, value) in rows {
                let (table, id, version) = split_doc_key(&key)?;
                if super::slot(version) != Slot::Current {
                    continue;
                }
                let row = super::DocRow::decode(&value)?;
                if row.live {
                    w.set_state(&table, &id, Some(row.index))?;
                }
            }
            w.put(META, META_STATE_BUILT, last);
            w.commit()?;
        }
    }
}
