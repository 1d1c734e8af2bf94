//! The storage interface: what a backend must provide for the engine to keep ledgers in it.
//!
//! A backend stores key spaces (named, declared when it is opened) of ordered byte keys
//! and byte values. It offers two things only:
//!
//! * a [`View`]: a consistent snapshot for reading, with point reads and ordered range
//!   reads of a key space;
//! * [`Backend::commit`]: one atomic write of a whole batch of puts and deletes, conditional on the
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
//! * `commit` MUST apply every put and delete of the batch or none. It MUST NOT return `Ok` before the
//!   batch is durable (unless the batch asks for deferred durability: then it is durable
//!   no later than the next durable commit). It MUST refuse, with [`ErrorKind::Conflict`]
//!   and nothing applied, a batch whose condition does not hold.
//! * Keys sort bytewise, shorter first on a common prefix.
//!
//! A backend that several processes may open at once (a database) also keeps each
//! ledger's write lease ([`Leases`]): at most one process writes a ledger at a time, and
//! its commits carry the lease they were made under ([`Batch::fence`]). Such a backend
//! MUST refuse, with [`ErrorKind::Conflict`] and nothing applied, a batch whose fence is
//! not the ledger's lease when it commits. A backend only one process can open (redb,
//! behind the data folder's lock) has no leases: that process is the writer.

use std::ops::Bound;
use std::time::Duration;

use super::{Error, Result};

/// A key space, by its position in the list the backend was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Space(pub usize);

/// One read of [`View::read_many`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// The value of a key of a space.
    Get(Space, Vec<u8>),
    /// The greatest key of a space.
    Last(Space),
}

/// Rows of a range read, in key order.
pub type Rows<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// A consistent snapshot of a backend.
pub trait View {
    /// The value of `key` in `space`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The answers to several reads, in the order asked: a value for each [`Read::Get`],
    /// a key for each [`Read::Last`]. A backend across a network answers them all in one
    /// round trip; the default reads each in turn.
    fn read_many(&self, reads: &[Read]) -> Result<Vec<Option<Vec<u8>>>> {
        reads
            .iter()
            .map(|read| match read {
                Read::Get(space, key) => self.get(*space, key),
                Read::Last(space) => self.last_key(*space),
            })
            .collect()
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
    /// Keys to remove (absent ones are no error). No key is both put and removed.
    pub deletes: Vec<(Space, Vec<u8>)>,
    /// Commit only if the greatest key of this space is this one (`None`: the space is
    /// empty). The journal's, so that a batch only extends the tree its writer read.
    pub expect_last: Option<(Space, Option<Vec<u8>>)>,
    /// Durable with a later commit only (bulk loads that are put in place once whole).
    pub defer_durability: bool,
    /// Commit only while this is the ledger's write lease (backends with [`Leases`]).
    pub fence: Option<Lease>,
}

/// A write lease: the right to commit to one ledger, held in the storage for a while.
/// Each grant has a new epoch, greater than every earlier one of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Which grant this is.
    pub epoch: u64,
}

/// Who claims a lease: a process, and the address other servers reach it at.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// Unique to one process's lifetime.
    pub id: &'a str,
    /// Where the other servers send the writes they receive for the ledger.
    pub address: &'a str,
}

/// What a claim of the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The claimant holds the lease now, for the time it asked (by the storage's clock).
    Granted(Lease),
    /// Another holder has it, for at least `remaining` more unless it renews.
    Held {
        /// The holder's address.
        address: String,
        /// How long it has left.
        remaining: Duration,
    },
}

/// The write leases of a storage that several processes share.
pub trait Leases: Send + Sync {
    /// Takes the lease for `ttl` if it is free, expired, or `holder`'s already (a new
    /// epoch each time); otherwise says who has it.
    fn claim(&self, holder: Holder<'_>, ttl: Duration) -> Result<Claim>;

    /// Extends `lease` to `ttl` from now. False when it is no longer the ledger's lease.
    fn renew(&self, lease: Lease, ttl: Duration) -> Result<bool>;

    /// Gives `lease` up at once, so that another server need not wait for it to expire.
    fn release(&self, lease: Lease) -> Result<()>;

    /// The address of the lease's holder and how long it has left, while one holds it.
    fn holder(&self) -> Result<Option<(String, Duration)>>;
}

/// A storage backend: see the module documentation for the contract.
pub trait Backend: Send + Sync {
    /// A consistent view of everything committed so far. It holds no borrow of the
    /// backend: a snapshot may outlive the call that took it.
    fn view(&self) -> Result<Box<dyn View>>;

    /// Whether the storage is across a network, so that each read waits a round trip:
    /// callers then read ahead what they will need ([`View::read_many`] answers many reads
    /// in one trip) and wait on threads of their own, not on the server's async workers.
    /// False for a backend on this machine, whose reads cost microseconds.
    fn remote(&self) -> bool {
        false
    }

    /// Applies `batch`, all or nothing, durably, if its condition holds.
    fn commit(&self, batch: Batch) -> Result<()>;

    /// The ledger's write lease, when several processes may open this storage at once;
    /// `None` when only one can (that one is the writer).
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }
}

/// What a backend reports when a batch's fence is no longer the ledger's lease.
pub(crate) fn fenced(fence: Lease, current: u64) -> Error {
    Error::new(
        super::ErrorKind::Conflict,
        format!(
            "another server holds the ledger's write lease now (epoch {current}; this batch \
             was made under epoch {})",
            fence.epoch
        ),
    )
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
