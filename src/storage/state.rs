//! The state map in storage: the records of `graven_verify::map_nodes`, one row per
//! interior node in the `state` key space, the map's root in `meta`, and, in memory, what
//! changed since those rows were written.
//!
//! The map follows the docs index: every revision written sets its document's key to its
//! journal index, or removes it for a delete ([`Writer::set_state`]). A batch keeps the
//! records it changed in memory, typed, and hashes them once ([`Writer::state_root`]).
//!
//! Writing every changed record with every commit would cost most of a write's speed:
//! keys spread by SHA-256 put a batch's records on scattered pages. So the stored rows are
//! the map at one journal size, the *flush* (`meta` `state_flushed`), and each store keeps
//! the records changed since then in an [`Overlay`], by the journal size that changed
//! them. A commit adds its changes there once it is durable; every `flush_every`
//! revisions (and when the server stops) one commit writes them all, each record once,
//! with the new flush size, in the same atomic batch as its revisions. Nothing is lost in
//! a crash: the journal is durable, and the map of any size is the stored map and the
//! journal's entries from the flush on, which a store replays ([`Generation::catch_up`])
//! whenever its overlay lacks them: after a restart, in a server that reads what another
//! wrote (shared storage), or in a reader whose snapshot is newer than what the writer
//! has published yet. The replay checks every state root the entries carry.
//!
//! A read at journal size `n` ([`Snapshot::state_proof`]) takes each record from the
//! overlay's newest version at most `n`, or else from its snapshot, whose rows are the map
//! at that snapshot's flush; an overlay generation belongs to one flush, so the two always
//! make the map of size `n`.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use graven_verify::map::{MapProof, map_key};
use graven_verify::map_nodes::{Child, Map, MapNodes, Node, node_position};
use graven_verify::{Entry, Hash, Operation, State};

use super::{
    DOCS, Error, ErrorKind, META, META_FORMAT, Read, Result, STATE, Slot, Snapshot, Store, Writer,
    be, split_doc_key,
};

/// The map's root ([`Child`]'s stored form); none for the empty map.
pub(super) const META_STATE_ROOT: &[u8] = b"state_root";
/// The journal size whose map the stored rows are (u64 BE); none for 0.
pub(super) const META_STATE_FLUSHED: &[u8] = b"state_flushed";
/// During the upgrade to layout 6: the docs key the map has been built up to.
const META_STATE_BUILT: &[u8] = b"state_built_to";
/// Documents added to the map per durable batch of the upgrade.
const BUILD_CHUNK: usize = 65_536;
/// Revisions between two flushes of the map's records, unless a server is told
/// otherwise. It bounds the replay after a crash (about 10 µs a revision at 100,000
/// documents: 102,500 revisions replayed in 1.0 s) and the overlay's memory (about 120
/// bytes per record version, some 10 to 15 versions a revision).
pub const DEFAULT_STATE_FLUSH: u64 = 16_384;

/// Where a record is kept ([`node_position`]).
type Position = [u8; 33];

/// Tables of records by position, hashed with foldhash (seeded per process): SipHash on 33
/// bytes was a tenth of a write's time, and positions are SHA-256 prefixes, so a fast
/// hash spreads them as well.
type Records<V> = HashMap<Position, V, foldhash::fast::RandomState>;

/// The caches of decoded records (the writer's, and a flush's stored records) hold them
/// down to this depth: at most `2^(d+1)` records (about 150 bytes each: 10 MB at 15),
/// the part of every path that the next reads and batches meet again.
const CACHE_DEPTH: u8 = 15;

/// What a write batch, or a replay, has read and changed of the map.
#[derive(Debug, Default)]
pub(super) struct StateChanges {
    /// The root as the batch has it, once read.
    root: Option<Child>,
    /// Records the batch changed: a record, or `None` for one removed.
    changed: Records<Option<Node>>,
    /// Records read, decoded.
    read: Records<Node>,
    /// The writer's cache, taken for the batch (see [`NodeCache`]).
    cache: Option<NodeCache>,
    /// Whether anything changed.
    dirty: bool,
    /// Whether the batch writes every record changed since the flush.
    flush: bool,
}

/// The upper records of the newest map, as the last batch committed left them: a writer
/// reads them from here rather than from the versions or storage. Only writers use it,
/// one at a time (a batch takes it and puts it back once committed), and only over a
/// snapshot of exactly its size.
#[derive(Debug, Default)]
pub(super) struct NodeCache {
    size: u64,
    /// Records at depth [`CACHE_DEPTH`] and above: `None` for one removed.
    nodes: Records<Option<Node>>,
}

impl NodeCache {
    fn keep(&mut self, at: Position, node: Option<Node>) {
        if at[32] <= CACHE_DEPTH {
            self.nodes.insert(at, node);
        }
    }
}

/// The records changed since the stored ones, shared by a store's writers and readers.
pub(super) struct Overlay {
    /// Revisions between flushes.
    flush_every: AtomicU64,
    /// The generation of the newest flush known, and the one before (for a snapshot
    /// taken just before a flush).
    generations: Mutex<[Option<Arc<Generation>>; 2]>,
    /// The writer's cache, while no batch has it.
    cache: Mutex<Option<NodeCache>>,
}

/// The changes since one flush.
pub(super) struct Generation {
    /// The journal size of the flush.
    flushed: u64,
    versions: RwLock<Versions>,
    /// Stored records of this flush, decoded, down to [`CACHE_DEPTH`], as reads met them:
    /// the stored rows of one flush never change, so readers share them.
    stored: RwLock<Records<Node>>,
}

/// Records and roots by the journal size that set them, from a flush on.
#[derive(Debug)]
struct Versions {
    /// The journal size they are complete up to.
    upto: u64,
    /// The root at each size that changed it, in order.
    roots: Vec<(u64, Child)>,
    /// Every record version, in the order published, in chunks of [`LOG_CHUNK`] (a log
    /// that grows never copies what it holds, and its chunks are reused memory).
    log: Vec<Vec<Version>>,
    /// Versions in `log`.
    logged: u32,
    /// Each changed record's newest version in `log`.
    newest: Records<u32>,
}

/// One version of a record.
#[derive(Debug)]
struct Version {
    /// The journal size that set it.
    size: u64,
    /// The record, or `None` for one removed.
    node: Option<Node>,
    /// The record's version before, in `log` ([`NO_VERSION`] for none).
    before: u32,
}

const NO_VERSION: u32 = u32::MAX;
const LOG_CHUNK: usize = 4096;

impl Versions {
    fn new(flushed: u64) -> Versions {
        Versions {
            upto: flushed,
            roots: Vec::new(),
            log: Vec::new(),
            logged: 0,
            newest: Records::default(),
        }
    }

    /// The version of a record in `log` from `at` on, at journal size `size`.
    fn at_size(&self, mut at: u32, size: u64) -> Option<&Version> {
        while at != NO_VERSION {
            let i = at as usize;
            let version = &self.log[i / LOG_CHUNK][i % LOG_CHUNK];
            if version.size <= size {
                return Some(version);
            }
            at = version.before;
        }
        None
    }

    /// The record at `at` in the map of size `size`, if changed since the flush (`Some`
    /// of `None` when removed).
    fn node(&self, at: &Position, size: u64) -> Option<Option<Node>> {
        self.at_size(*self.newest.get(at)?, size).map(|v| v.node)
    }

    /// The root of the map of size `size`, if changed since the flush.
    fn root(&self, size: u64) -> Option<Child> {
        self.roots
            .iter()
            .rev()
            .find(|(s, _)| *s <= size)
            .map(|(_, r)| *r)
    }

    /// Records `changes` (hashed) as the map of journal size `size`.
    fn publish(&mut self, size: u64, changes: &StateChanges) {
        for (at, node) in &changes.changed {
            let before = self.newest.insert(*at, self.logged).unwrap_or(NO_VERSION);
            if (self.logged as usize).is_multiple_of(LOG_CHUNK) {
                self.log.push(Vec::with_capacity(LOG_CHUNK));
            }
            if let Some(chunk) = self.log.last_mut() {
                chunk.push(Version {
                    size,
                    node: *node,
                    before,
                });
            }
            self.logged += 1;
        }
        if let Some(root) = changes.root {
            self.roots.push((size, root));
        }
        self.upto = size;
    }
}

impl Overlay {
    pub(super) fn new() -> Overlay {
        Overlay {
            flush_every: AtomicU64::new(DEFAULT_STATE_FLUSH),
            generations: Mutex::new([None, None]),
            cache: Mutex::new(None),
        }
    }

    /// The writer's cache if it is of journal size `size`; an empty one otherwise.
    fn take_cache(&self, size: u64) -> NodeCache {
        let kept = self.cache.lock().ok().and_then(|mut c| c.take());
        match kept {
            Some(cache) if cache.size == size => cache,
            _ => NodeCache {
                size,
                nodes: Records::default(),
            },
        }
    }

    pub(super) fn set_flush_every(&self, revisions: u64) {
        self.flush_every.store(revisions.max(1), Ordering::Relaxed);
    }

    /// The generation of the flush at journal size `flushed`: kept if it is the newest
    /// or the one before, made (empty) otherwise.
    fn generation(&self, flushed: u64) -> Result<Arc<Generation>> {
        let mut gens = self.generations.lock().map_err(|_| poisoned())?;
        if let Some(g) = gens.iter().flatten().find(|g| g.flushed == flushed) {
            return Ok(g.clone());
        }
        let made = Arc::new(Generation {
            flushed,
            versions: RwLock::new(Versions::new(flushed)),
            stored: RwLock::new(Records::default()),
        });
        // A snapshot older than both is served by a generation of its own, not kept.
        if gens[0].as_ref().is_none_or(|g| g.flushed < flushed) {
            gens[1] = gens[0].replace(made.clone());
        }
        Ok(made)
    }
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Failed, "the state overlay's lock is poisoned")
}

impl Generation {
    /// Replays the journal of `snap` into the versions up to its size `size`, if they do
    /// not reach it yet. `snap`'s stored records are those of this generation's flush.
    fn catch_up(&self, snap: &Snapshot, size: u64) -> Result<()> {
        if self.versions.read().map_err(|_| poisoned())?.upto >= size {
            return Ok(());
        }
        let mut versions = self.versions.write().map_err(|_| poisoned())?;
        let from = versions.upto;
        if from >= size {
            return Ok(());
        }
        if size - from > 4096 {
            tracing::info!("replaying the state map of journal entries {from} to {size}");
        }
        let mut changes = StateChanges::default();
        for row in snap.leaves_in(from, size)? {
            let row = row?;
            let index = row.index();
            let entry = Entry::decode(row.leaf()?.entry).map_err(|e| {
                Error::damaged(format!("journal entry {index} does not decode: {e}"))
            })?;
            let live = (entry.operation != Operation::Delete).then_some(index);
            let key = map_key(&entry.table, &entry.id);
            let mut map = self.replay_map(&mut changes, &versions, snap);
            map.set(&key, live)?;
            match entry.state {
                State::Pending => continue,
                State::Root(carried) => {
                    let computed = map.root()?;
                    if computed != carried {
                        return Err(Error::damaged(format!(
                            "journal entry {index}: its state root {} is not the root of the \
                             state map after it ({})",
                            carried.to_hex(),
                            computed.to_hex()
                        )));
                    }
                }
                State::Untracked => {
                    return Err(Error::damaged(format!(
                        "journal entry {index} is of format 1, after the state map's flush at \
                         {}",
                        self.flushed
                    )));
                }
            }
            versions.publish(index + 1, &std::mem::take(&mut changes));
        }
        // A snapshot may end inside a transaction (an import commits in pieces): its map
        // is the map after its last entry all the same.
        if changes.dirty {
            self.replay_map(&mut changes, &versions, snap).root()?;
        }
        versions.publish(size, &changes);
        Ok(())
    }

    /// The map a replay changes: `changes` over the versions so far and `snap`'s records.
    fn replay_map<'a>(
        &'a self,
        changes: &'a mut StateChanges,
        versions: &'a Versions,
        snap: &'a Snapshot,
    ) -> Map<Layered<'a>> {
        Map::new(Layered {
            changes,
            base: Base {
                versions: Some(versions),
                stored: &self.stored,
                size: versions.upto,
                snap,
            },
        })
    }
}

/// What a snapshot's map is made of: its journal size, and the generation of its flush.
pub(super) struct StateAt {
    size: u64,
    generation: Arc<Generation>,
}

fn decode_root(value: Option<Vec<u8>>) -> Result<Child> {
    match value {
        None => Ok(Child::Empty),
        Some(v) => Child::decode(&v)
            .filter(|c| *c != Child::Node(None))
            .ok_or_else(|| Error::damaged("the state map's root row is not a root")),
    }
}

fn missing(at: &Position) -> Error {
    Error::damaged(format!(
        "the state map has no node at depth {} ({}), which its parent names",
        at[32],
        hex::encode(&at[..32])
    ))
}

fn decode_node(at: &Position, value: Option<Vec<u8>>) -> Result<Node> {
    let depth = at[32];
    let value = value.ok_or_else(|| missing(at))?;
    Node::decode(&value).ok_or_else(|| {
        Error::damaged(format!(
            "the state map's node at depth {depth} ({}) is not a node",
            hex::encode(&at[..32])
        ))
    })
}

/// The map of one journal size, read only: the overlay's versions at that size over the
/// snapshot's stored records.
struct Base<'a> {
    versions: Option<&'a Versions>,
    /// The generation's decoded stored records ([`Generation::stored`]).
    stored: &'a RwLock<Records<Node>>,
    size: u64,
    snap: &'a Snapshot,
}

impl Base<'_> {
    fn root(&self) -> Result<Child> {
        if let Some(root) = self.versions.and_then(|v| v.root(self.size)) {
            return Ok(root);
        }
        decode_root(self.snap.get(META, META_STATE_ROOT)?)
    }

    fn node(&self, at: &Position) -> Result<Node> {
        if let Some(node) = self.versions.and_then(|v| v.node(at, self.size)) {
            return node.ok_or_else(|| missing(at));
        }
        let cached = at[32] <= CACHE_DEPTH;
        if cached && let Some(node) = self.stored.read().ok().and_then(|s| s.get(at).copied()) {
            return Ok(node);
        }
        let node = decode_node(at, self.snap.get(STATE, at)?)?;
        // Another reader may hold the lock: then this one is not cached, which is fine.
        if cached && let Ok(mut stored) = self.stored.try_write() {
            stored.insert(*at, node);
        }
        Ok(node)
    }
}

/// A batch's (or replay's) changes over the map of one size.
struct Layered<'a> {
    changes: &'a mut StateChanges,
    base: Base<'a>,
}

impl MapNodes for Layered<'_> {
    type Error = Error;

    fn root(&mut self) -> Result<Child> {
        if let Some(root) = self.changes.root {
            return Ok(root);
        }
        let root = self.base.root()?;
        self.changes.root = Some(root);
        Ok(root)
    }

    fn set_root(&mut self, root: Child) {
        self.changes.root = Some(root);
        self.changes.dirty = true;
    }

    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node> {
        let at = node_position(depth, key);
        if let Some(node) = self.changes.changed.get(&at) {
            return node.ok_or_else(|| missing(&at));
        }
        if let Some(cache) = &mut self.changes.cache
            && at[32] <= CACHE_DEPTH
        {
            if let Some(node) = cache.nodes.get(&at) {
                return node.ok_or_else(|| missing(&at));
            }
            let node = self.base.node(&at)?;
            cache.nodes.insert(at, Some(node));
            return Ok(node);
        }
        if let Some(node) = self.changes.read.get(&at) {
            return Ok(*node);
        }
        let node = self.base.node(&at)?;
        self.changes.read.insert(at, node);
        Ok(node)
    }

    fn set_node(&mut self, depth: usize, key: &Hash, node: Option<Node>) {
        self.changes.changed.insert(node_position(depth, key), node);
        self.changes.dirty = true;
    }
}

/// The map of one size as a snapshot has it: read only. Its records are all hashed, so
/// proving never writes.
struct Reader<'a>(Base<'a>);

impl MapNodes for Reader<'_> {
    type Error = Error;

    fn root(&mut self) -> Result<Child> {
        self.0.root()
    }

    fn set_root(&mut self, _: Child) {}

    fn node(&mut self, depth: usize, key: &Hash) -> Result<Node> {
        self.0.node(&node_position(depth, key))
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
    out.push(Read::Get(META, META_STATE_FLUSHED.to_vec()));
    out.extend((0..=depth.min(255)).map(|d| Read::Get(STATE, node_position(d, &key).to_vec())));
}

/// What a commit does once durable: publish its changes to the overlay, or start a new
/// generation at the flush it wrote; and give the writer's cache back, brought to the
/// commit's size.
pub(super) struct AfterCommit {
    to: u64,
    changes: StateChanges,
    /// The generation to publish to, from the batch's size; none when the batch flushed.
    publish: Option<(Arc<Generation>, u64)>,
}

impl AfterCommit {
    /// Applies it: the commit is durable, so this cannot fail. (A lock poisoned by a
    /// panic leaves the overlay as it was; readers then replay the journal.)
    pub(super) fn apply(mut self, overlay: &Overlay) {
        match &self.publish {
            Some((generation, from)) => {
                if let Ok(mut versions) = generation.versions.write()
                    // A reader may have replayed the batch already.
                    && versions.upto == *from
                {
                    versions.publish(self.to, &self.changes);
                }
            }
            None => {
                let _ = overlay.generation(self.to);
            }
        }
        if let Some(mut cache) = self.changes.cache.take() {
            for (at, node) in self.changes.changed.drain() {
                cache.keep(at, node);
            }
            cache.size = self.to;
            if let Ok(mut kept) = overlay.cache.lock() {
                *kept = Some(cache);
            }
        }
    }
}

impl Writer<'_> {
    /// Sets a document's entry in the state map: the journal index of its live revision,
    /// or none (deleted).
    pub fn set_state(&mut self, table: &str, id: &str, index: Option<u64>) -> Result<()> {
        self.with_map(|map| map.set(&map_key(table, id), index))
    }

    /// The state map's root after this batch's changes so far.
    pub fn state_root(&mut self) -> Result<Hash> {
        self.with_map(|map| map.root())
    }

    /// Makes the commit write every record changed since the last flush.
    pub fn flush_state(&mut self) {
        self.state.flush = true;
    }

    fn with_map<T>(&mut self, f: impl FnOnce(&mut Map<Layered<'_>>) -> Result<T>) -> Result<T> {
        let at = self.snap.state_at()?;
        if self.state.cache.is_none() {
            self.state.cache = Some(self.store.overlay.take_cache(at.size));
        }
        let versions = at.generation.versions.read().map_err(|_| poisoned())?;
        let mut map = Map::new(Layered {
            changes: &mut self.state,
            base: Base {
                versions: Some(&versions),
                stored: &at.generation.stored,
                size: at.size,
                snap: &self.snap,
            },
        });
        f(&mut map)
    }

    /// Puts the map's changes among the batch's writes, as a flush when due: every
    /// record changed since the last one, and the new flush size. Returns what to do
    /// once the commit is durable.
    pub(super) fn state_writes(&mut self) -> Result<Option<AfterCommit>> {
        if !self.state.dirty && !self.state.flush {
            return Ok(None);
        }
        let at = self.snap.state_at()?;
        let (from, g) = (at.size, at.generation.clone());
        let to = from + self.appended;
        let flushed = self.snap.state_flushed()?;
        let due = to - flushed >= self.store.overlay.flush_every.load(Ordering::Relaxed);
        if !self.state.flush && !due {
            self.state_root()?;
            return Ok(Some(AfterCommit {
                to,
                changes: std::mem::take(&mut self.state),
                publish: Some((g, from)),
            }));
        }
        if !self.state.dirty && to == flushed {
            return Ok(None);
        }
        self.state_root()?;
        let changes = std::mem::take(&mut self.state);
        // Every record changed since the flush, as of this batch, in key order.
        let mut records: Vec<(Position, Option<Node>)> = Vec::new();
        {
            let versions = g.versions.read().map_err(|_| poisoned())?;
            records.reserve(versions.newest.len() + changes.changed.len());
            for (at, &newest) in &versions.newest {
                if !changes.changed.contains_key(at)
                    && let Some(v) = versions.at_size(newest, from)
                {
                    records.push((*at, v.node));
                }
            }
        }
        records.extend(changes.changed.iter().map(|(at, node)| (*at, *node)));
        records.sort_unstable_by_key(|r| r.0);
        let root = changes.root;
        let unhashed = || Error::new(ErrorKind::Failed, "a state map node left unhashed");
        for (at, node) in records {
            match node {
                Some(node) => {
                    let bytes = node.encode().ok_or_else(unhashed)?;
                    self.put(STATE, at.to_vec(), bytes);
                }
                None => self.remove(STATE, at.to_vec()),
            }
        }
        match root {
            // Unchanged since the stored root.
            None => {}
            // The empty map has no root row.
            Some(Child::Empty) => self.remove(META, META_STATE_ROOT),
            Some(root) => {
                let bytes = root.encode().ok_or_else(unhashed)?;
                self.put(META, META_STATE_ROOT, bytes);
            }
        }
        self.put(META, META_STATE_FLUSHED, be(to).to_vec());
        Ok(Some(AfterCommit {
            to,
            changes,
            publish: None,
        }))
    }
}

impl Snapshot {
    /// The journal size whose map the stored records are.
    pub fn state_flushed(&self) -> Result<u64> {
        match self.get(META, META_STATE_FLUSHED)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::damaged("meta: state_flushed is not a u64")),
        }
    }

    /// What this snapshot's map is made of, replaying the journal since the flush where
    /// the overlay lacks it.
    fn state_at(&self) -> Result<&StateAt> {
        if let Some(at) = self.state_at.get() {
            return Ok(at);
        }
        let size = self.size()?;
        let flushed = self.state_flushed()?;
        if flushed > size {
            return Err(Error::damaged(format!(
                "meta: the state map is flushed at journal size {flushed}, past the journal's \
                 {size}"
            )));
        }
        let generation = self.overlay.generation(flushed)?;
        generation.catch_up(self, size)?;
        Ok(self.state_at.get_or_init(|| StateAt { size, generation }))
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Map<Reader<'_>>) -> Result<T>) -> Result<T> {
        let at = self.state_at()?;
        let versions = at.generation.versions.read().map_err(|_| poisoned())?;
        f(&mut Map::new(Reader(Base {
            versions: Some(&versions),
            stored: &at.generation.stored,
            size: at.size,
            snap: self,
        })))
    }

    /// Brings the store's overlay up to this snapshot (replaying the journal since the
    /// flush if need be), so that the next read need not.
    pub fn prepare_state(&self) -> Result<()> {
        self.state_at().map(|_| ())
    }

    /// The state map's root.
    pub fn state_root(&self) -> Result<Hash> {
        self.with_reader(|map| map.root())
    }

    /// The proof of a document's entry in the state map, present or absent.
    pub fn state_proof(&self, table: &str, id: &str) -> Result<MapProof> {
        self.with_reader(|map| map.prove(&map_key(table, id)))
    }

    /// Every stored record of the state map (the map at [`Snapshot::state_flushed`]), in
    /// key order: its position and bytes.
    pub fn state_rows(&self) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        self.view.range(STATE, Bound::Unbounded, Bound::Unbounded)
    }

    /// The stored root row, as stored.
    pub fn state_root_row(&self) -> Result<Option<Vec<u8>>> {
        self.get(META, META_STATE_ROOT)
    }
}

impl Store {
    /// Sets how many revisions go between two flushes of the state map's records.
    pub fn set_state_flush(&self, revisions: u64) {
        self.overlay.set_flush_every(revisions);
    }

    /// Builds the state map of a layout-5 ledger from its docs index, [`BUILD_CHUNK`]
    /// documents per durable batch (a restart goes on from the last), then declares
    /// this build's layout.
    pub(super) fn build_state(&self) -> Result<()> {
        let total = self.read()?.doc_row_count()?;
        if total > 0 {
            tracing::info!("storage layout upgrade: building the state map of {total} docs rows");
        }
        loop {
            let mut w = self.write()?;
            // Each batch writes what it built, at the journal's size.
            w.flush_state();
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

    /// Declares the stored records the map of the journal's size, as they are in layout
    /// 6 (which wrote them with every commit) and while the map is built (the journal
    /// does not grow then); with `format`, declares this build's layout too.
    pub(super) fn declare_state_flushed(&self, format: bool) -> Result<()> {
        let mut w = self.write()?;
        let size = w.snap.size()?;
        w.put(META, META_STATE_FLUSHED, be(size).to_vec());
        if format {
            w.put(
                META,
                META_FORMAT,
                super::FORMAT_VERSION.to_be_bytes().to_vec(),
            );
        }
        w.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DEFAULT_CACHE_BYTES, NewLedger, NewRevision};
    use super::*;
    use graven_verify::CompactRange;
    use graven_verify::map::{Lookup, StateMap, check_map_proof};

    fn create(path: &std::path::Path) -> Store {
        let ledger = NewLedger {
            origin: "test",
            created_micros: 0,
            deletion_protection: false,
            checkpoint: "",
        };
        Store::create(path, DEFAULT_CACHE_BYTES, &ledger).expect("create")
    }

    /// A ledger's journal and map, kept by hand: what the sequencer writes.
    struct Ledger {
        range: CompactRange,
        tx_id: u64,
        /// Each document's version and live revision's index.
        docs: HashMap<String, (u64, Option<u64>)>,
        map: StateMap,
        rng: u64,
    }

    impl Ledger {
        fn next(&mut self) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        }

        /// Writes `txs` random transactions in one batch of `store`.
        fn batch(&mut self, store: &Store, txs: u64) {
            let mut w = store.write().expect("write");
            for _ in 0..txs {
                let n = 1 + self.next() % 4;
                let mut ids: Vec<String> =
                    (0..n).map(|_| format!("d{}", self.next() % 40)).collect();
                ids.sort();
                ids.dedup();
                for (position, id) in ids.iter().enumerate() {
                    let index = self.range.size();
                    let before = self.docs.get(id).copied();
                    let (operation, version) = match before {
                        None => (Operation::Insert, 0),
                        Some((v, None)) => (Operation::Insert, v + 1),
                        Some((v, Some(_))) if self.next().is_multiple_of(3) => {
                            (Operation::Delete, v + 1)
                        }
                        Some((v, Some(_))) => (Operation::Update, v + 1),
                    };
                    let live = operation != Operation::Delete;
                    w.set_state("t", id, live.then_some(index)).expect("set");
                    let key = map_key("t", id);
                    match live {
                        true => self.map.insert(key, index),
                        false => self.map.remove(&key),
                    }
                    let last = position + 1 == ids.len();
                    let state = match last {
                        true => State::Root(w.state_root().expect("root")),
                        false => State::Pending,
                    };
                    if last {
                        assert_eq!(w.state_root().expect("root"), self.map.root());
                    }
                    let entry = Entry {
                        operation,
                        tx_id: self.tx_id,
                        tx_position: position as u32,
                        tx_revisions: ids.len() as u32,
                        commit_time_micros: 1,
                        version,
                        table: "t".into(),
                        id: id.clone(),
                        principal: String::new(),
                        body_hash: live.then_some(graven_verify::EMPTY_ROOT),
                        state,
                    }
                    .encode()
                    .expect("entry");
                    w.append_revision(
                        &mut self.range,
                        &NewRevision {
                            entry: &entry,
                            body: if live { b"{}" } else { b"" },
                            table: "t",
                            id,
                            version,
                            live,
                            previous: None,
                        },
                    )
                    .expect("append");
                    self.docs
                        .insert(id.clone(), (version, live.then_some(index)));
                }
                self.tx_id += 1;
            }
            w.commit().expect("commit");
        }

        /// Checks `snap`'s map against `map`: its root, and a proof of every document.
        fn check(&self, snap: &Snapshot, map: &StateMap) {
            let root = snap.state_root().expect("root");
            assert_eq!(root, map.root());
            for d in 0..40 {
                let key = map_key("t", &format!("d{d}"));
                let proof = snap.state_proof("t", &format!("d{d}")).expect("proof");
                let want = match map.get(&key) {
                    Some(index) => Lookup::Current(index),
                    None => Lookup::Absent,
                };
                assert_eq!(check_map_proof(&root, &key, &proof), Ok(want), "d{d}");
            }
        }
    }

    /// Through flushes, a restart without one (the journal's tail replayed), and old
    /// snapshots read after newer commits and flushes, every snapshot's map is its
    /// journal's; the stored records are the map at the flush.
    #[test]
    fn every_snapshot_reads_the_map_of_its_journal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.redb");
        let mut store = create(&path);
        store.set_state_flush(7);
        let mut ledger = Ledger {
            range: CompactRange::new(),
            tx_id: 0,
            docs: HashMap::new(),
            map: StateMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        let mut old: Vec<(Snapshot, StateMap)> = Vec::new();
        let mut flushes = 0;
        for round in 0..120 {
            let txs = 1 + ledger.next() % 3;
            if round % 7 == 5 {
                // A batch that never commits: what it changed (and the writer's cache it
                // took) must leave no trace.
                let mut w = store.write().expect("write");
                for d in 0..5 {
                    w.set_state("t", &format!("d{d}"), Some(1 << 40))
                        .expect("set");
                }
                w.state_root().expect("root");
            }
            ledger.batch(&store, txs);
            let snap = store.read().expect("read");
            ledger.check(&snap, &ledger.map);
            let flushed = snap.state_flushed().expect("flushed");
            assert!(
                snap.size().expect("size") - flushed < 7 + 12,
                "round {round}"
            );
            if flushed == snap.size().expect("size") {
                flushes += 1;
            }
            if round % 10 == 3 {
                old.push((snap, ledger.map.clone()));
            }
            if round % 25 == 24 {
                // A restart: the overlay is gone, the tail is replayed.
                drop(old.drain(..));
                drop(store);
                store = Store::open(&path, DEFAULT_CACHE_BYTES).expect("open");
                store.set_state_flush(7);
                ledger.check(&store.read().expect("read"), &ledger.map);
            }
        }
        assert!(flushes > 5, "{flushes} flushes");
        for (snap, map) in &old {
            ledger.check(snap, map);
        }
        // A forced flush writes the map of the journal's size.
        let mut w = store.write().expect("write");
        w.flush_state();
        w.commit().expect("flush");
        let snap = store.read().expect("read");
        assert_eq!(snap.state_flushed().ok(), snap.size().ok());
        ledger.check(&snap, &ledger.map);
    }

    /// A tail whose entry carries a root the replay does not reach is damage, named.
    #[test]
    fn a_replayed_root_that_differs_is_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.redb");
        let store = create(&path);
        let mut w = store.write().expect("write");
        w.set_state("t", "a", Some(0)).expect("set");
        let entry = Entry {
            operation: Operation::Insert,
            tx_id: 0,
            tx_position: 0,
            tx_revisions: 1,
            commit_time_micros: 1,
            version: 0,
            table: "t".into(),
            id: "a".into(),
            principal: String::new(),
            body_hash: Some(graven_verify::EMPTY_ROOT),
            // Not the root of the map {a: 0}.
            state: State::Root(graven_verify::EMPTY_ROOT),
        }
        .encode()
        .expect("entry");
        let rev = NewRevision {
            entry: &entry,
            body: b"{}",
            table: "t",
            id: "a",
            version: 0,
            live: true,
            previous: None,
        };
        w.append_revision(&mut CompactRange::new(), &rev)
            .expect("append");
        w.commit().expect("commit");
        // Another store over the file sees the tail without the writer's overlay.
        drop(store);
        let store = Store::open(&path, DEFAULT_CACHE_BYTES).expect("open");
        let e = store
            .read()
            .expect("read")
            .state_root()
            .expect_err("damage");
        assert_eq!(e.kind(), ErrorKind::Damaged);
        assert!(
            e.to_string().contains("journal entry 0: its state root"),
            "{e}"
        );
    }
}
