//! The storage interface: what a backend must provide for the engine to keep ledgers in it.
//!
//! A backend stores key spaces (named, declared when it is opened) of ordered byte keys
//! and byte values. It offers two things only:
//!
//! * a [`View`]: a consistent snapshot for reading, with point reads and ordered range
//!   reads of a key space;
//! * [`Backend::commit`]: one atomic write of a whole batch of puts, conditional on the
//!   last key of one key space (the journal's), so that two writers can never both extend
//!   the same tree.
//!
//! Everything graven stores, and how, is decided above it, in `storage/mod.rs`: key and
//! value encodings, which key space holds what. A new key space is a new name in that
//! list; no backend changes. docs/FORMAT.md section 9 gives the key spaces and how each
//! backend lays them out.
//!
//! Contract:
//!
//! * A view MUST show every commit that returned before it was taken, and none that began
//!   after; reads of one view MUST agree with each other.
//! * `commit` MUST apply every put of the batch or none. It MUST NOT return `Ok` before the
//!   batch is durable (unless the batch asks for deferred durability: then it is durable
//!   no later than the next durable commit). It MUST refuse, with [`ErrorKind::Conflict`]
//!   and nothing applied, a batch whose condition does not hold.
//! * Keys sort bytewise, shorter first on a common prefix.

use std::ops::Bound;

use super::{Error, Result};

/// A key space, by its position in the list the backend was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Space(pub usize);

/// Rows of a range read, in key order.
pub type Rows<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// A consistent snapshot of a backend.
pub trait View {
    /// The value of `key` in `space`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys` in `space`, in the order asked. A backend across a network
    /// answers them in one round trip; the default asks one at a time.
    fn get_many(&self, space: Space, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(space, k)).collect()
    }

    /// The rows of `space` with keys in `(start, end)`, in key order.
    fn range<'a>(
        &'a self,
        space: Space,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<Rows<'a>>;

    /// The greatest key of `space`.
    fn last_key(&self, space: Space) -> Result<Option<Vec<u8>>>;

    /// The number of rows of `space`.
    fn len(&self, space: Space) -> Result<u64>;
}

/// The one write of a commit batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// Every put, in order (a later put of the same key wins).
    pub puts: Vec<(Space, Vec<u8>, Vec<u8>)>,
    /// Commit only if the greatest key of this space is this one (`None`: the space is
    /// empty). The journal's, so that a batch only extends the tree its writer read.
    pub expect_last: Option<(Space, Option<Vec<u8>>)>,
    /// Durable with a later commit only (bulk loads that are put in place once whole).
    pub defer_durability: bool,
}

/// A storage backend: see the module documentation for the contract.
pub trait Backend: Send + Sync {
    /// A consistent view of everything committed so far. It holds no borrow of the
    /// backend: a snapshot may outlive the call that took it.
    fn view(&self) -> Result<Box<dyn View>>;

    /// Applies `batch`, all or nothing, durably, if its condition holds.
    fn commit(&self, batch: Batch) -> Result<()>;
}

/// What a backend reports when a batch's condition does not hold.
pub(crate) fn conflict(space: &str, expected: Option<&[u8]>, found: Option<&[u8]>) -> Error {
    Error::new(
        super::ErrorKind::Conflict,
        format!(
            "another writer extended the {space} key space: expected its last key {}, found {}",
            expected.map_or_else(|| "none".into(), hex::encode),
            found.map_or_else(|| "none".into(), hex::encode),
        ),
    )
}
